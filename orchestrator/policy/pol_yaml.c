/* SPDX-License-Identifier: Apache-2.0 */
/* libyaml's event stream turned into a bounded, positioned tree. */
#include "pol_yaml.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "cleanup.h"

struct builder {
    const char *name;
    yaml_parser_t parser;
    size_t nodes;
    cdn_err **err;
};

static int fail_at(struct builder *b, const yaml_mark_t *m, const char *msg) {
    return cdn_err_set(b->err, EINVAL, "%s:%zu:%zu: %s", b->name, m->line + 1, m->column + 1, msg);
}

void pnode_free(struct pnode *n) {
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++)
        pnode_free(n->kids[i]);
    free(n->kids);
    free(n->scalar);
    free(n);
}

void pnode_freep(struct pnode **n) {
    pnode_free(*n);
    *n = NULL;
}

static struct pnode *new_node(struct builder *b, enum pnode_type t, const yaml_mark_t *m) {
    if (++b->nodes > POL_MAX_NODES) {
        fail_at(b, m, "the policy has too many nodes");
        return NULL;
    }
    struct pnode *n = calloc(1, sizeof(*n));
    if (!n) {
        cdn_err_set(b->err, ENOMEM, "out of memory");
        return NULL;
    }
    n->type = t;
    n->line = (unsigned)m->line + 1;
    n->col = (unsigned)m->column + 1;
    return n;
}

static int add_kid(struct builder *b, struct pnode *parent, struct pnode *kid) {
    struct pnode **k = realloc(parent->kids, (parent->n + 1) * sizeof(*k));
    if (!k)
        return cdn_err_set(b->err, ENOMEM, "out of memory");
    parent->kids = k;
    parent->kids[parent->n++] = kid;
    return 0;
}

static int next_event(struct builder *b, yaml_event_t *ev) {
    if (!yaml_parser_parse(&b->parser, ev)) {
        const yaml_mark_t *m = &b->parser.problem_mark;
        char msg[512];
        snprintf(msg, sizeof(msg), "invalid YAML: %s%s%s",
                 b->parser.problem ? b->parser.problem : "syntax error",
                 b->parser.context ? " " : "", b->parser.context ? b->parser.context : "");
        return fail_at(b, m, msg);
    }
    return 0;
}

/* Anchors and tags are refused wherever they appear. */
static int check_props(struct builder *b, const yaml_event_t *ev, const yaml_char_t *anchor,
                       const yaml_char_t *tag, int implicit) {
    if (anchor)
        return fail_at(b, &ev->start_mark,
                       "anchors (&name) are not allowed in a policy: write the value out");
    if (tag && !implicit)
        return fail_at(b, &ev->start_mark, "tags (!tag) are not allowed in a policy");
    return 0;
}

static int parse_node(struct builder *b, yaml_event_t *ev, unsigned depth, struct pnode **out);

/* Reads children until the matching end event. */
static int parse_children(struct builder *b, struct pnode *n, yaml_event_type_t end,
                          unsigned depth) {
    for (;;) {
        yaml_event_t ev;
        int r = next_event(b, &ev);
        if (r < 0)
            return r;
        if (ev.type == end) {
            yaml_event_delete(&ev);
            break;
        }
        struct pnode *kid = NULL;
        r = parse_node(b, &ev, depth + 1, &kid);
        yaml_event_delete(&ev);
        if (r < 0)
            return r;
        if ((r = add_kid(b, n, kid)) < 0) {
            pnode_free(kid);
            return r;
        }
    }
    if (n->type != PN_MAP)
        return 0;
    /* keys: plain scalars, each once */
    for (size_t i = 0; i < n->n; i += 2) {
        struct pnode *k = n->kids[i];
        if (k->type != PN_SCALAR) {
            yaml_mark_t m = {.line = k->line - 1, .column = k->col - 1};
            return fail_at(b, &m, "a key must be a plain word, not a list or a mapping");
        }
        for (size_t j = 0; j < i; j += 2)
            if (strcmp(n->kids[j]->scalar, k->scalar) == 0) {
                yaml_mark_t m = {.line = k->line - 1, .column = k->col - 1};
                char msg[600];
                snprintf(msg, sizeof(msg), "duplicate key '%.200s' (first at line %u)", k->scalar,
                         n->kids[j]->line);
                return fail_at(b, &m, msg);
            }
    }
    return 0;
}

static int parse_node(struct builder *b, yaml_event_t *ev, unsigned depth, struct pnode **out) {
    if (depth > POL_MAX_DEPTH)
        return fail_at(b, &ev->start_mark, "the policy nests too deeply");
    int r;
    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        return fail_at(b, &ev->start_mark,
                       "aliases (*name) are not allowed in a policy: write the value out");
    case YAML_SCALAR_EVENT: {
        if ((r = check_props(b, ev, ev->data.scalar.anchor, ev->data.scalar.tag,
                             ev->data.scalar.plain_implicit || ev->data.scalar.quoted_implicit)) <
            0)
            return r;
        if (memchr(ev->data.scalar.value, '\0', ev->data.scalar.length))
            return fail_at(b, &ev->start_mark, "a value holds a NUL character");
        struct pnode *n = new_node(b, PN_SCALAR, &ev->start_mark);
        if (!n)
            return -EINVAL;
        n->scalar = strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        if (!n->scalar) {
            pnode_free(n);
            return cdn_err_set(b->err, ENOMEM, "out of memory");
        }
        *out = n;
        return 0;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
        const yaml_char_t *anchor =
            seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor;
        const yaml_char_t *tag = seq ? ev->data.sequence_start.tag : ev->data.mapping_start.tag;
        int implicit = seq ? ev->data.sequence_start.implicit : ev->data.mapping_start.implicit;
        if ((r = check_props(b, ev, anchor, tag, implicit)) < 0)
            return r;
        _cleanup_(pnode_freep) struct pnode *n =
            new_node(b, seq ? PN_SEQ : PN_MAP, &ev->start_mark);
        if (!n)
            return -EINVAL;
        r = parse_children(b, n, seq ? YAML_SEQUENCE_END_EVENT : YAML_MAPPING_END_EVENT, depth);
        if (r < 0)
            return r;
        *out = TAKE_PTR(n);
        return 0;
    }
    default: return fail_at(b, &ev->start_mark, "unexpected YAML structure");
    }
}

static int expect(struct builder *b, yaml_event_type_t t, const char *what) {
    yaml_event_t ev;
    int r = next_event(b, &ev);
    if (r < 0)
        return r;
    if (ev.type != t) {
        r = fail_at(b, &ev.start_mark, what);
        yaml_event_delete(&ev);
        return r;
    }
    yaml_event_delete(&ev);
    return 0;
}

int pol_yaml_parse(const char *name, const char *data, size_t len, struct pnode **root,
                   cdn_err **err) {
    *root = NULL;
    if (len > POL_MAX_BYTES)
        return cdn_err_set(err, EFBIG, "%s: the policy is over %u bytes", name, POL_MAX_BYTES);
    struct builder b = {.name = name, .err = err};
    if (!yaml_parser_initialize(&b.parser))
        return cdn_err_set(err, ENOMEM, "out of memory");
    yaml_parser_set_input_string(&b.parser, (const unsigned char *)data, len);
    int r = expect(&b, YAML_STREAM_START_EVENT, "expected the start of the file");
    yaml_event_t ev = {0};
    if (r == 0 && (r = next_event(&b, &ev)) == 0) {
        if (ev.type == YAML_STREAM_END_EVENT) {
            yaml_mark_t m = ev.start_mark;
            r = fail_at(&b, &m, "the policy is empty (it needs at least 'version: 1')");
        } else if (ev.type != YAML_DOCUMENT_START_EVENT)
            r = fail_at(&b, &ev.start_mark, "expected a document");
        yaml_event_delete(&ev);
    }
    if (r == 0 && (r = next_event(&b, &ev)) == 0) {
        r = parse_node(&b, &ev, 0, root);
        yaml_event_delete(&ev);
    }
    if (r == 0)
        r = expect(&b, YAML_DOCUMENT_END_EVENT, "expected the end of the document");
    if (r == 0 && (r = next_event(&b, &ev)) == 0) {
        if (ev.type != YAML_STREAM_END_EVENT)
            r = fail_at(&b, &ev.start_mark,
                        "a policy is one YAML document: a second one ('---') starts here");
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&b.parser);
    if (r < 0)
        pnode_freep(root);
    return r;
}
