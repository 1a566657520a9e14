/* SPDX-License-Identifier: Apache-2.0 */
/* Dependency changes read from each manifest and lockfile format, and nothing from others. */
#include <jansson.h>
#include <string.h>

#include "test.h"
#include "workspace.h"

/* "name old->new" for each change, joined with "; ", for comparison. */
static char *render(json_t *a) {
    static char out[2048];
    out[0] = '\0';
    size_t i;
    json_t *c;
    json_array_foreach(a, i, c) {
        const char *o = json_string_value(json_object_get(c, "old"));
        const char *n = json_string_value(json_object_get(c, "new"));
        snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%s %s->%s", i ? "; " : "",
                 json_string_value(json_object_get(c, "name")), o ? o : "-", n ? n : "-");
    }
    return out;
}

static void check(const char *path, const char *a, const char *b, const char *want) {
    json_t *ch = cdn_deps_changes(path, a, a ? strlen(a) : 0, b, b ? strlen(b) : 0);
    ASSERT_TRUE(ch != NULL);
    ASSERT_STREQ(render(ch), want);
    json_decref(ch);
}

TEST(each_format_yields_its_changes) {
    check("web/package-lock.json",
          "{\"lockfileVersion\":3,\"packages\":{\"\":{\"name\":\"app\"},"
          "\"node_modules/left-pad\":{\"version\":\"1.0.0\"},"
          "\"node_modules/gone\":{\"version\":\"2.0.0\"}}}",
          "{\"lockfileVersion\":3,\"packages\":{\"\":{\"name\":\"app\"},"
          "\"node_modules/left-pad\":{\"version\":\"1.3.0\"},"
          "\"node_modules/a/node_modules/@scope/b\":{\"version\":\"0.1.0\"}}}",
          "left-pad 1.0.0->1.3.0; @scope/b -->0.1.0; gone 2.0.0->-");
    check("package-lock.json", "{\"dependencies\":{\"x\":{\"version\":\"1.0.0\"}}}",
          "{\"dependencies\":{\"x\":{\"version\":\"1.0.1\"}}}", "x 1.0.0->1.0.1");
    check("package.json", "{\"dependencies\":{\"react\":\"^17.0.0\"}}",
          "{\"dependencies\":{\"react\":\"^18.2.0\"},\"devDependencies\":{\"vite\":\"5.0.0\"}}",
          "react ^17.0.0->^18.2.0; vite -->5.0.0");
    check("requirements-dev.txt", "requests==2.30.0\n# pinned\nFlask_Login>=0.5\n",
          "requests==2.31.0  # security fix\nflask-login>=0.5\nnumpy[extra]~=1.26 ; "
          "python_version>'3'\n",
          "requests 2.30.0->2.31.0; numpy -->~=1.26");
    check("Cargo.lock", "[[package]]\nname = \"serde\"\nversion = \"1.0.100\"\n",
          "[[package]]\nname = \"serde\"\nversion = \"1.0.200\"\n\n[[package]]\nname = "
          "\"anyhow\"\nversion = \"1.0.0\"\nsource = \"registry\"\n",
          "serde 1.0.100->1.0.200; anyhow -->1.0.0");
    check("go.sum", NULL,
          "golang.org/x/text v0.14.0 h1:abc=\ngolang.org/x/text v0.14.0/go.mod h1:def=\n",
          "golang.org/x/text -->v0.14.0");
    ASSERT_TRUE(cdn_deps_changes("README.md", "a", 1, "b", 1) == NULL);
    /* hostile text: read what can be read, never fail */
    check("package-lock.json", "{not json", "[1,2,3]", "");
    check("Cargo.lock", "[[package]]\nname = \"unterminated\nversion = 1\n", "", "");
}
