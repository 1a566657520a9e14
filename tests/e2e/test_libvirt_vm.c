/* SPDX-License-Identifier: Apache-2.0 */
/* Task VMs through libvirt (orchestrator/vm): the daemons are started when none runs (and
 * stopped after), a transient domain boots the minimal image, the agent answers on the domain's
 * virtio-serial socket, and every exit path leaves no cordon-* domain and no socket behind. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "harness.h"
#include "qemu.h"
#include "test.h"
#include "vmhost.h"

#define ARGV(...) ((const char *const[]){__VA_ARGS__, NULL})

static void spec_for(struct cdn_vm_spec *spec, const char *id, const char *dir, char *kernel,
                     char *initrd, size_t len, const char *extra) {
    snprintf(kernel, len, "%s/kernel/vmlinux", th_images_dir());
    snprintf(initrd, len, "%s/minimal.cpio.lz4", th_images_dir());
    *spec = (struct cdn_vm_spec){.id = id,
                                 .dir = dir,
                                 .kernel = kernel,
                                 .initrd = initrd,
                                 .cmdline_extra = extra,
                                 .memory_mib = 256};
}

TEST(domain_xml_is_escaped_and_validated) {
    struct cdn_vm_spec spec = {.id = "t1",
                               .dir = "/tmp/a'b<c>",
                               .kernel = "/k&",
                               .initrd = "/i",
                               .cmdline_extra = "x=\"y\""};
    char *xml = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_vm_domain_xml(&spec, &xml, &err), err);
    ASSERT_CONTAINS(xml, "<name>cordon-t1</name>");
    ASSERT_CONTAINS(xml, "path='/tmp/a&apos;b&lt;c&gt;/agent.sock'");
    ASSERT_CONTAINS(xml, "<kernel>/k&amp;</kernel>");
    ASSERT_CONTAINS(xml, "x=&quot;y&quot;");
    ASSERT_CONTAINS(xml, "name='org.cordon.agent.0'");
    ASSERT_TRUE(!strstr(xml, "<interface")); /* no NIC, ever */
    free(xml);
    /* A task disk: the overlay on pcie.0, its shared base never relabelled by libvirt. */
    spec.disk = "/t/disk.qcow2";
    ASSERT_FAILS(cdn_vm_domain_xml(&spec, &xml, &err), err, "an overlay disk needs its base");
    spec.disk_base = "/img/devbox.qcow2";
    ASSERT_OK(cdn_vm_domain_xml(&spec, &xml, &err), err);
    ASSERT_CONTAINS(xml, "<source file='/t/disk.qcow2'/>");
    ASSERT_CONTAINS(xml, "<source file='/img/devbox.qcow2'><seclabel model='dac' relabel='no'/>");
    ASSERT_CONTAINS(xml, "<target dev='vda' bus='virtio'/>");
    free(xml);
    spec.disk = spec.disk_base = NULL;
    /* vsock: a virtio vsock device with a CID libvirt picks, the agent told so, no serial port. */
    spec.transport = CDN_VM_VSOCK;
    ASSERT_OK(cdn_vm_domain_xml(&spec, &xml, &err), err);
    ASSERT_CONTAINS(xml, "<vsock model='virtio'>");
    ASSERT_CONTAINS(xml, "<cid auto='yes'/>");
    ASSERT_CONTAINS(xml, "quiet cordon.transport=vsock ");
    ASSERT_TRUE(!strstr(xml, "agent.sock") && !strstr(xml, "<channel"));
    free(xml);
    spec.transport = CDN_VM_SERIAL;
    spec.id = "../evil";
    ASSERT_FAILS(cdn_vm_domain_xml(&spec, &xml, &err), err, "must be 1-64 of [A-Za-z0-9_-]");
    spec.id = "ok";
    spec.dir = "/tmp/new\nline";
    ASSERT_FAILS(cdn_vm_domain_xml(&spec, &xml, &err), err, "control character");
    cdn_err_free(err);
}

TEST(missing_image_files_are_named_before_libvirt_is_asked) {
    struct cdn_vm_spec spec = {
        .id = "t2", .dir = "/tmp", .kernel = "/no/such/vmlinux", .initrd = "/no/such/initrd"};
    struct cdn_vm *vm = NULL;
    cdn_err *err = NULL;
    /* No connection is needed to refuse this: the host pointer is never touched. */
    ASSERT_FAILS(cdn_vm_start(NULL, &spec, &vm, &err), err,
                 "vm cordon-t2: kernel /no/such/vmlinux: No such file or directory");
    cdn_err_free(err);
}

/* The parent of the domain's QEMU, found through the pid file libvirt keeps for it. */
static pid_t qemu_parent(const char *name) {
    char path[256], buf[32] = "";
    snprintf(path, sizeof(path), "/run/libvirt/qemu/%s.pid", name);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    if (!fgets(buf, sizeof(buf), f))
        buf[0] = '\0';
    fclose(f);
    return th_proc_ppid((pid_t)atoi(buf));
}

TEST_T(libvirt_vm_boots_runs_and_leaves_nothing, 240) {
    _cleanup_free_ char *dir = th_tmpdir();
    chmod(dir, 0711);
    char daemons[4200], vmdir[4200], vmdir2[4200], kernel[4200], initrd[4200];
    snprintf(daemons, sizeof(daemons), "%s/daemons", dir);
    snprintf(vmdir, sizeof(vmdir), "%s/vm1", dir);
    snprintf(vmdir2, sizeof(vmdir2), "%s/vm2", dir);
    mkdir(vmdir, 0711);
    mkdir(vmdir2, 0711);
    /* held to the end, and closed at exit if an assertion fails (the domains autodestroy) */
    struct cdn_vm_host *h = th_host_hold(daemons);
    cdn_err *err = NULL;
    bool started = cdn_vm_host_started_daemons(h);

    char id[64];
    snprintf(id, sizeof(id), "test-%d", getpid());
    struct cdn_vm_spec spec;
    spec_for(&spec, id, vmdir, kernel, initrd, sizeof(kernel), "cordon.test=libvirt");
    struct cdn_vm *vm = NULL;
    uint64_t t0 = th_now_ms();
    ASSERT_OK(cdn_vm_start(h, &spec, &vm, &err), err);
    int fd = cdn_vm_agent_fd(vm, 10000, &err);
    ASSERT_OK(fd, err);
    struct cdn_channel_opts copts = {.name = cdn_vm_name(vm), .handshake_timeout_ms = 60000};
    struct cdn_channel *ch = NULL;
    ASSERT_OK(cdn_channel_open(fd, &copts, &ch, &err), err);
    printf("  agent answered %llu ms after the domain was created\n",
           (unsigned long long)(th_now_ms() - t0));
    struct th_output o = {0};
    struct cdn_exec_result r = th_run(ch, &o, ARGV("sh", "-c", "cat /proc/cmdline; exit 7"));
    ASSERT_EQ(r.exit_code, 7);
    ASSERT_CONTAINS(th_output_str(&o, 1), "cordon.test=libvirt");
    th_output_free(&o);
    /* Daemons cordon started run under its reaper, which QEMU (daemonised by libvirt) reaches
     * when orphaned: teardown does not wait on a slow PID 1 to reap it. */
    pid_t reaper = started ? qemu_parent(cdn_vm_name(vm)) : 0;
    if (started) {
        char comm[64];
        ASSERT_TRUE(reaper > 1);
        ASSERT_TRUE(th_proc_comm(reaper, comm, sizeof(comm)));
        ASSERT_STREQ(comm, "cordon-reaper");
    }

    /* A second VM at once, both running commands; then destroyed while it runs. */
    char id2[80];
    snprintf(id2, sizeof(id2), "%s-b", id);
    struct cdn_vm_spec spec2;
    char kernel2[4200], initrd2[4200];
    spec_for(&spec2, id2, vmdir2, kernel2, initrd2, sizeof(kernel2), "cordon.test=second");
    struct cdn_vm *vm2 = NULL;
    ASSERT_OK(cdn_vm_start(h, &spec2, &vm2, &err), err);
    int fd2 = cdn_vm_agent_fd(vm2, 10000, &err);
    ASSERT_OK(fd2, err);
    struct cdn_channel_opts copts2 = {.name = cdn_vm_name(vm2), .handshake_timeout_ms = 60000};
    struct cdn_channel *ch2 = NULL;
    ASSERT_OK(cdn_channel_open(fd2, &copts2, &ch2, &err), err);
    r = th_run(ch2, &o, ARGV("cat", "/proc/cmdline"));
    ASSERT_CONTAINS(th_output_str(&o, 1), "cordon.test=second");
    th_output_free(&o);
    r = th_run(ch, &o, ARGV("cat", "/proc/cmdline")); /* the first is still there too */
    ASSERT_CONTAINS(th_output_str(&o, 1), "cordon.test=libvirt");
    th_output_free(&o);
    cdn_channel_free(ch2);
    ASSERT_TRUE(cdn_vm_running(vm2));
    cdn_vm_destroy(vm2);

    /* Shutdown powers the guest off; libvirt drops the transient domain by itself. */
    ASSERT_OK(cdn_channel_shutdown(ch, true, 10000, &err), err);
    cdn_channel_free(ch);
    uint64_t end = th_now_ms() + 20000;
    while (cdn_vm_running(vm) && th_now_ms() < end)
        usleep(50000);
    ASSERT_TRUE(!cdn_vm_running(vm));
    char console[4300];
    snprintf(console, sizeof(console), "%s", cdn_vm_console_path(vm));
    cdn_vm_destroy(vm);
    th_assert_no_cordon_domains(h);
    /* The socket is gone; the console log stays as evidence. */
    char sock[4300];
    snprintf(sock, sizeof(sock), "%s/agent.sock", vmdir);
    ASSERT_TRUE(access(sock, F_OK) < 0);
    ASSERT_TRUE(access(console, F_OK) == 0);
    th_host_release();
    if (started) { /* and the daemons we started are stopped */
        uint64_t until = th_now_ms() + 5000;
        while (access("/run/libvirt/libvirt-sock", F_OK) == 0 && th_now_ms() < until)
            usleep(50000);
        /* the reaper goes once the daemons and their QEMUs are gone */
        while (kill(reaper, 0) == 0 && th_now_ms() < until + 5000)
            usleep(50000);
        ASSERT_TRUE(kill(reaper, 0) < 0);
    }
    th_rmtree(dir);
}

static char *run_out(struct cdn_channel *ch, const char *script) {
    struct th_output o = {0};
    struct cdn_exec_result r = th_run(ch, &o, ARGV("sh", "-c", script));
    ASSERT_EQ(r.exit_code, 0);
    char *s = strdup(th_output_str(&o, 1));
    th_output_free(&o);
    return s;
}

/* A guest saved while its agent was connected becomes a template: a clone of it runs in a folder
 * of its own (its socket and console there) under the template's name (libvirt restores a saved
 * guest under its own name and UUID only), so a second clone waits for the first to go; the next
 * clone has the host's clock and fresh entropy (its kernel's random UUID differs from the first
 * clone's although their memory was the same). A clone of another shape, or of a file that is
 * no saved guest, is refused with libvirt's reason. */
TEST_T(a_saved_guest_is_cloned_one_at_a_time_each_with_fresh_entropy, 240) {
    _cleanup_free_ char *dir = th_tmpdir();
    chmod(dir, 0711);
    char daemons[4200], tdir[4200], c1[4200], c2[4200], saved[4200], kernel[4200], initrd[4200];
    snprintf(daemons, sizeof(daemons), "%s/daemons", dir);
    snprintf(tdir, sizeof(tdir), "%s/template", dir);
    snprintf(c1, sizeof(c1), "%s/c1", dir);
    snprintf(c2, sizeof(c2), "%s/c2", dir);
    snprintf(saved, sizeof(saved), "%s/template.save", dir);
    mkdir(tdir, 0711);
    mkdir(c1, 0711);
    mkdir(c2, 0711);
    struct cdn_vm_host *h = th_host_hold(daemons);
    cdn_err *err = NULL;
    char id[64], name[80];
    snprintf(id, sizeof(id), "tpl-%d", getpid());
    snprintf(name, sizeof(name), "cordon-%s", id);

    struct cdn_vm_spec spec;
    spec_for(&spec, id, tdir, kernel, initrd, sizeof(kernel), "cordon.test=template");
    struct cdn_vm *tpl = NULL;
    ASSERT_OK(cdn_vm_start(h, &spec, &tpl, &err), err);
    struct cdn_channel *ch = th_vm_agent(tpl);
    _cleanup_free_ char *before = run_out(ch, "echo made-by-template > /tmp/mark; echo ok");
    uint64_t t0 = th_now_ms();
    ASSERT_OK(cdn_vm_save(tpl, saved, &err), err);
    printf("  saved in %llu ms\n", (unsigned long long)(th_now_ms() - t0));
    cdn_channel_free(ch); /* after the save: the agent never saw the host leave */
    ASSERT_TRUE(!cdn_vm_running(tpl));
    cdn_vm_destroy(tpl);
    ASSERT_TRUE(!cdn_vm_host_has_domain(h, name));

    struct cdn_vm *vm1 = NULL, *vm2 = NULL, *bad = NULL;
    struct cdn_vm_spec s1 = spec, s2 = spec;
    s1.id = "ignored-1";
    s1.dir = c1;
    s2.id = "ignored-2";
    s2.dir = c2;
    t0 = th_now_ms();
    ASSERT_OK(cdn_vm_clone(h, saved, &s1, &vm1, &err), err);
    struct cdn_channel *ch1 = th_vm_agent(vm1);
    printf("  a clone answered %llu ms after its restore began\n",
           (unsigned long long)(th_now_ms() - t0));
    ASSERT_STREQ(cdn_vm_name(vm1), name);
    ASSERT_TRUE(cdn_vm_host_has_domain(h, name));
    ASSERT_CONTAINS(cdn_vm_console_path(vm1), c1);
    char sock[4300];
    snprintf(sock, sizeof(sock), "%s/agent.sock", c1);
    ASSERT_TRUE(access(sock, F_OK) == 0);
    /* One clone of a template at a time. */
    ASSERT_FAILS(cdn_vm_clone(h, saved, &s2, &bad, &err), err, "restoring a clone of");

    const char *probe = "cat /tmp/mark /proc/sys/kernel/random/uuid; date +%s";
    _cleanup_free_ char *o1 = run_out(ch1, probe);
    cdn_channel_free(ch1);
    cdn_vm_destroy(vm1);
    ASSERT_TRUE(!cdn_vm_host_has_domain(h, name));
    ASSERT_OK(cdn_vm_clone(h, saved, &s2, &vm2, &err), err);
    struct cdn_channel *ch2 = th_vm_agent(vm2);
    ASSERT_CONTAINS(cdn_vm_console_path(vm2), c2);
    _cleanup_free_ char *o2 = run_out(ch2, probe);
    char u1[64] = "", u2[64] = "";
    long long d1 = 0, d2 = 0;
    ASSERT_EQ(sscanf(o1, "made-by-template %63s %lld", u1, &d1), 2);
    ASSERT_EQ(sscanf(o2, "made-by-template %63s %lld", u2, &d2), 2);
    if (strcmp(u1, u2) == 0)
        FAIL("both clones drew the same random UUID %s: their entropy was not refreshed", u1);
    long long now = (long long)time(NULL);
    ASSERT_TRUE(llabs(d2 - now) <= 2 && d1 <= d2);
    cdn_channel_free(ch2);
    cdn_vm_destroy(vm2);

    /* Another shape than the saved guest's is refused (libvirt checks the ABI). */
    s1.memory_mib = 384;
    ASSERT_FAILS(cdn_vm_clone(h, saved, &s1, &bad, &err), err, "restoring a clone of");
    s1.memory_mib = spec.memory_mib;
    s1.transport = CDN_VM_VSOCK;
    ASSERT_FAILS(cdn_vm_clone(h, saved, &s1, &bad, &err), err, "only a virtio-serial guest");
    s1.transport = CDN_VM_SERIAL;
    char junk[4300];
    snprintf(junk, sizeof(junk), "%s/junk.save", dir);
    th_write_file(junk, "not a saved guest", 0600);
    ASSERT_FAILS(cdn_vm_clone(h, junk, &s1, &bad, &err), err, "reading the saved guest");
    cdn_err_free(err);
    th_assert_no_cordon_domains(h);
    th_host_release();
    th_rmtree(dir);
}

/* The KVM probe is a real boot: proven here under TCG (the guest reaches userspace, says so, and
 * powers off), then the verdict for KVM is cached per host boot. /dev/kvm is named through
 * kvm_dev so the probe runs even on hosts without it (libvirt or QEMU then refuses the guest). */
TEST_T(kvm_probe_boots_a_guest_and_caches_its_verdict, 180) {
    _cleanup_free_ char *dir = th_tmpdir();
    chmod(dir, 0711);
    char daemons[4200], scratch[4200], cache[4200], fake_kvm[4200], kernel[4200], initrd[4200];
    snprintf(daemons, sizeof(daemons), "%s/daemons", dir);
    snprintf(scratch, sizeof(scratch), "%s/probe", dir);
    snprintf(cache, sizeof(cache), "%s/accel.json", dir);
    snprintf(fake_kvm, sizeof(fake_kvm), "%s/kvm-node", dir);
    snprintf(kernel, sizeof(kernel), "%s/kernel/vmlinux", th_images_dir());
    snprintf(initrd, sizeof(initrd), "%s/minimal.cpio.lz4", th_images_dir());
    struct cdn_vm_host *test_host = th_host_hold(daemons);
    cdn_err *err = NULL;

    char why[512] = "";
    uint64_t t0 = th_now_ms();
    int r =
        cdn_vm_probe_boot(test_host, scratch, kernel, initrd, false, 60000, why, sizeof(why), &err);
    ASSERT_OK(r, err);
    if (r != 1)
        FAIL("the TCG probe boot failed: %s", why);
    printf("  TCG probe boot: %llu ms\n", (unsigned long long)(th_now_ms() - t0));

    struct cdn_vm_accel a;
    struct cdn_vm_accel_opts o = {.cache = cache,
                                  .scratch = scratch,
                                  .kernel = kernel,
                                  .initrd = initrd,
                                  .timeout_ms = 60000,
                                  .kvm_dev = "/nonexistent/kvm"};
    ASSERT_OK(cdn_vm_accel_choose(test_host, &o, &a, &err), err);
    ASSERT_TRUE(!a.kvm && !a.cached);
    ASSERT_CONTAINS(a.why, "/nonexistent/kvm is absent");
    ASSERT_TRUE(access(cache, F_OK) < 0); /* nothing probed, nothing cached */

    th_write_file(fake_kvm, "", 0600);
    o.kvm_dev = access("/dev/kvm", R_OK | W_OK) == 0 ? "/dev/kvm" : fake_kvm;
    ASSERT_OK(cdn_vm_accel_choose(test_host, &o, &a, &err), err);
    printf("  KVM probe verdict: %s%s\n", a.kvm ? "usable" : "unusable: ", a.why);
    bool verdict = a.kvm;
    ASSERT_TRUE(!a.cached);
    if (!a.kvm)
        ASSERT_CONTAINS(a.why, "exists but a probe boot under KVM failed");
    _cleanup_free_ char *cached = th_read_file(cache);
    ASSERT_CONTAINS(cached, "\"boot_id\"");
    ASSERT_OK(cdn_vm_accel_choose(test_host, &o, &a, &err), err);
    ASSERT_TRUE(a.cached && a.kvm == verdict);
    o.reprobe = true;
    ASSERT_OK(cdn_vm_accel_choose(test_host, &o, &a, &err), err);
    ASSERT_TRUE(!a.cached && a.kvm == verdict);

    th_assert_no_cordon_domains(test_host);
    ASSERT_TRUE(rmdir(scratch) == 0); /* the probes removed their folders */
    th_host_release();
    th_rmtree(dir);
}
