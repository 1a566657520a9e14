/* SPDX-License-Identifier: Apache-2.0 */
/* A small shell lexer: enough of POSIX sh to find the simple commands in what agents send
 * (`npm ci && npm test`, pipes, subshells, if/for/while bodies, redirections, here-docs), and to
 * say so, rather than guess, when a string holds something decided only at run time: command
 * substitution, process substitution, arithmetic, `case`, function definitions, or quotes that
 * never close. Words come out as the shell would pass them: quotes removed, escapes applied. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "pol_internal.h"

struct lexer {
    const char *s;
    size_t i;
    struct pol_split *out;
    struct pol_simple cur;
    bool at_start;         /* the next word starts a command (keywords apply) */
    char heredocs[8][128]; /* delimiters waiting for the next newline */
    size_t nheredocs;
    bool heredoc_strip[8];
};

static int push_word(struct pol_simple *c, const char *w, size_t n) {
    char **v = realloc(c->argv, (c->argc + 2) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    c->argv = v;
    if (!(c->argv[c->argc] = strndup(w, n)))
        return -ENOMEM;
    c->argv[++c->argc] = NULL;
    return 0;
}

static int mark(struct pol_simple *c, const char *why) {
    if (c->unanalysable)
        return 0;
    return (c->unanalysable = strdup(why)) ? 0 : -ENOMEM;
}

/* Ends the current simple command (if it has anything) and starts the next. */
static int flush(struct lexer *l) {
    l->at_start = true;
    if (!l->cur.argc && !l->cur.unanalysable && !l->cur.heredoc)
        return 0;
    struct pol_simple *v = realloc(l->out->v, (l->out->n + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    l->out->v = v;
    l->out->v[l->out->n++] = l->cur;
    l->cur = (struct pol_simple){0};
    return 0;
}

static bool is_blank(char c) { return c == ' ' || c == '\t'; }
static bool is_meta(char c) {
    return c == '\0' || is_blank(c) || c == '\n' || c == ';' || c == '&' || c == '|' || c == '(' ||
           c == ')' || c == '<' || c == '>';
}

/* After a newline: skip the bodies of pending here-docs. */
static void skip_heredocs(struct lexer *l) {
    for (size_t h = 0; h < l->nheredocs; h++) {
        const char *delim = l->heredocs[h];
        while (l->s[l->i]) {
            const char *line = l->s + l->i;
            const char *nl = strchr(line, '\n');
            size_t len = nl ? (size_t)(nl - line) : strlen(line);
            const char *t = line;
            if (l->heredoc_strip[h])
                while (*t == '\t' && t < line + len)
                    t++;
            size_t tl = len - (size_t)(t - line);
            l->i += len + (nl ? 1 : 0);
            if (tl == strlen(delim) && strncmp(t, delim, tl) == 0)
                break;
        }
    }
    l->nheredocs = 0;
}

/* One word, quotes removed. Returns its length in *out; sets what it contains. */
struct word_info {
    bool dollar_cmd; /* $( ` <( >( $(( */
    bool var;        /* $NAME, ${...} */
    bool glob;       /* unquoted * ? [ */
    bool quoted;
};

/* From the '(' at i to just past its matching ')', quotes and nesting respected (or the end). */
static size_t skip_parens(const char *s, size_t i) {
    int depth = 0;
    char q = 0;
    for (; s[i]; i++) {
        char c = s[i];
        if (c == '\\' && q != '\'' && s[i + 1]) {
            i++;
            continue;
        }
        if (q) {
            if (c == q)
                q = 0;
            continue;
        }
        if (c == '\'' || c == '"')
            q = c;
        else if (c == '(')
            depth++;
        else if (c == ')' && --depth == 0)
            return i + 1;
    }
    return i;
}

static size_t skip_backticks(const char *s, size_t i) {
    for (i++; s[i] && s[i] != '`'; i++)
        if (s[i] == '\\' && s[i + 1])
            i++;
    return s[i] ? i + 1 : i;
}

static int read_word(struct lexer *l, struct cdn_buf *w, struct word_info *wi) {
    const char *s = l->s;
    char q = 0;
    for (;;) {
        char c = s[l->i];
        if (!q && is_meta(c))
            break;
        if (c == '\0') /* unterminated quote */
            return mark(&l->cur, "a quote is never closed");
        if (!q && (c == '\'' || c == '"')) {
            q = c;
            wi->quoted = true;
            l->i++;
            continue;
        }
        if (q && c == q) {
            q = 0;
            l->i++;
            continue;
        }
        if (c == '\\' && q != '\'') {
            char n = s[l->i + 1];
            if (n == '\0') {
                l->i++;
                break;
            }
            if (n == '\n') { /* line continuation */
                l->i += 2;
                continue;
            }
            if (!q || n == '"' || n == '\\' || n == '$' || n == '`') {
                if (cdn_buf_append(w, &n, 1) < 0)
                    return -ENOMEM;
                l->i += 2;
                continue;
            }
        }
        if (q != '\'' && (c == '`' || (c == '$' && s[l->i + 1] == '('))) {
            /* command substitution: taken whole into the word (it is unanalysable anyway) */
            wi->dollar_cmd = true;
            size_t end = c == '`' ? skip_backticks(s, l->i) : skip_parens(s, l->i + 1);
            if (cdn_buf_append(w, s + l->i, end - l->i) < 0)
                return -ENOMEM;
            l->i = end;
            continue;
        }
        if (q != '\'') {
            if (0)
                ;
            else if (c == '$' &&
                     (s[l->i + 1] == '{' || s[l->i + 1] == '_' ||
                      (s[l->i + 1] >= 'A' && s[l->i + 1] <= 'Z') ||
                      (s[l->i + 1] >= 'a' && s[l->i + 1] <= 'z') ||
                      (s[l->i + 1] >= '0' && s[l->i + 1] <= '9') || strchr("@*#?$!-", s[l->i + 1])))
                wi->var = true;
        }
        if (!q && (c == '*' || c == '?' || c == '['))
            wi->glob = true;
        if (cdn_buf_append(w, &c, 1) < 0)
            return -ENOMEM;
        l->i++;
    }
    return 0;
}

static const char *const skip_keywords[] = {"if",    "then",  "else", "elif", "fi", "do",   "done",
                                            "while", "until", "!",    "{",    "}",  "time", NULL};

static bool in_list(const char *w, size_t n, const char *const *list) {
    for (const char *const *k = list; *k; k++)
        if (strlen(*k) == n && strncmp(*k, w, n) == 0)
            return true;
    return false;
}

/* `for NAME in WORDS` up to ; or newline: those words are not a command. */
static void skip_for_header(struct lexer *l) {
    while (l->s[l->i] && l->s[l->i] != ';' && l->s[l->i] != '\n')
        l->i++;
}

static int handle_redirect(struct lexer *l) {
    const char *s = l->s;
    bool heredoc = s[l->i] == '<' && s[l->i + 1] == '<' && s[l->i + 2] != '<';
    bool strip = heredoc && s[l->i + 2] == '-';
    bool herestring = s[l->i] == '<' && s[l->i + 1] == '<' && s[l->i + 2] == '<';
    if ((s[l->i] == '<' || s[l->i] == '>') && s[l->i + 1] == '(') {
        l->i = skip_parens(s, l->i + 1);
        return mark(&l->cur, "process substitution <(...) runs a command decided at run time");
    }
    while (s[l->i] == '<' || s[l->i] == '>' || s[l->i] == '&' || s[l->i] == '|' ||
           (s[l->i] == '-' && heredoc))
        l->i++;
    while (is_blank(s[l->i]))
        l->i++;
    struct cdn_buf target = {0};
    struct word_info wi = {0};
    int r = read_word(l, &target, &wi);
    if (r == 0 && wi.dollar_cmd)
        r = mark(&l->cur, "a redirection target comes from command substitution");
    if (r == 0 && heredoc) {
        if (l->nheredocs < 8 && cdn_buf_len(&target) < 127) {
            memcpy(l->heredocs[l->nheredocs], cdn_buf_head(&target), cdn_buf_len(&target));
            l->heredocs[l->nheredocs][cdn_buf_len(&target)] = '\0';
            l->heredoc_strip[l->nheredocs++] = strip;
        }
        l->cur.heredoc = true; /* the decider knows whether the program is a shell */
    }
    if (r == 0 && herestring)
        l->cur.heredoc = true; /* <<< "string": the same question */
    cdn_buf_free(&target);
    return r;
}

static int split_string(struct lexer *l) {
    const char *s = l->s;
    l->at_start = true;
    int r = 0;
    while (r == 0) {
        char c = s[l->i];
        if (c == '\0')
            break;
        if (is_blank(c)) {
            l->i++;
            continue;
        }
        if (c == '#' && (l->i == 0 || is_meta(s[l->i - 1]))) { /* comment to end of line */
            while (s[l->i] && s[l->i] != '\n')
                l->i++;
            continue;
        }
        if (c == '\n') {
            l->i++;
            r = flush(l);
            skip_heredocs(l);
            continue;
        }
        if (c == ';' || c == '&' || c == '|' || c == '(' || c == ')') {
            if (c == ';' && s[l->i + 1] == ';')
                r = mark(&l->cur, "a case statement");
            if (c == '&' && s[l->i + 1] == '>') { /* &> file */
                r = handle_redirect(l);
                continue;
            }
            bool pipe = c == '|' && s[l->i + 1] != '|';
            l->i += (s[l->i + 1] == c && (c == '&' || c == '|' || c == ';')) ? 2 : 1;
            if (c == '(' && l->cur.argc) /* name() { ...: a function definition */
                r = mark(&l->cur, "a function definition");
            if (r == 0)
                r = flush(l);
            l->cur.piped = pipe;
            continue;
        }
        if (c == '<' || c == '>' ||
            ((c >= '0' && c <= '9') && (s[l->i + 1] == '<' || s[l->i + 1] == '>'))) {
            if (c != '<' && c != '>')
                l->i++;
            r = handle_redirect(l);
            continue;
        }
        size_t start = l->i;
        struct cdn_buf w = {0};
        struct word_info wi = {0};
        r = read_word(l, &w, &wi);
        size_t n = cdn_buf_len(&w);
        const char *word = (const char *)cdn_buf_head(&w);
        if ((n == 1 && word[0] == '[') || (n == 2 && !strncmp(word, "[[", 2)))
            wi.glob = false; /* test's brackets, not a pattern */
        if (r == 0 && l->at_start && !wi.quoted && n) {
            if (in_list(word, n, skip_keywords)) {
                cdn_buf_free(&w);
                continue;
            }
            if (n == 3 && !strncmp(word, "for", 3)) {
                skip_for_header(l);
                cdn_buf_free(&w);
                continue;
            }
            if ((n == 4 && !strncmp(word, "case", 4)) ||
                (n == 8 && !strncmp(word, "function", 8)) ||
                (n == 6 && !strncmp(word, "select", 6)))
                r = mark(&l->cur, n == 4 ? "a case statement" : "a function definition");
            /* NAME=value before the program: an assignment, not the program */
            const char *eq = memchr(word, '=', n);
            if (r == 0 && eq && eq > word &&
                strspn(word, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") ==
                    (size_t)(eq - word)) {
                if (wi.dollar_cmd)
                    r = mark(&l->cur, "an assignment takes its value from command substitution");
                cdn_buf_free(&w);
                continue;
            }
        }
        if (r == 0 && wi.dollar_cmd)
            r = mark(&l->cur,
                     "command substitution $(...) or `...` runs a command decided at run time");
        if (r == 0 && l->at_start && (wi.var || wi.glob))
            r = mark(&l->cur, "the program's name is computed at run time (a variable or a glob)");
        if (r == 0)
            r = push_word(&l->cur, n ? word : "", n);
        if (r == 0 && start == l->i)
            l->i++; /* never stall */
        l->at_start = false;
        cdn_buf_free(&w);
    }
    if (r == 0)
        r = flush(l);
    return r;
}

int pol_shell_split(const char *s, struct pol_split *out) {
    *out = (struct pol_split){0};
    struct lexer l = {.s = s, .out = out};
    int r = split_string(&l);
    if (r < 0) {
        for (size_t i = 0; i < l.cur.argc; i++)
            free(l.cur.argv[i]);
        free(l.cur.argv);
        free(l.cur.unanalysable);
        pol_split_free(out);
    }
    return r;
}

void pol_split_free(struct pol_split *s) {
    for (size_t i = 0; i < s->n; i++) {
        for (size_t j = 0; j < s->v[i].argc; j++)
            free(s->v[i].argv[j]);
        free(s->v[i].argv);
        free(s->v[i].unanalysable);
    }
    free(s->v);
    *s = (struct pol_split){0};
}
