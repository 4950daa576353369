/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * sev-launch: an AMD SEV / SEV-ES guest launch, the way a VMM performs it with memenc.
 *
 *   probe + negotiate -> KVM_CREATE_VM -> INIT2 (or legacy INIT / ES_INIT, as negotiated)
 *   -> LAUNCH_START (/dev/sev) -> memslot + REG_REGION -> LAUNCH_UPDATE_DATA of the image
 *   -> vCPUs [-> LAUNCH_UPDATE_VMSA for SEV-ES] -> LAUNCH_MEASURE (length, then fetch)
 *   -> LAUNCH_FINISH -> GUEST_STATUS
 *
 * It prints the launch measurement (an HMAC over the launch digest, which memenc-sim --report
 * shows for a simulated host).
 *
 * Usage: sev-launch [--trace]
 *   (memenc-sim run --profile PROFILE -- sev-launch: on a simulated host)
 *                   [--type sev|sev-es]
 *   --type  the technology (default: the best this host has, SEV-ES over SEV)
 * Exit: 0 launched, 1 a call failed, 2 usage, 77 no SEV here (run it under memenc-sim to simulate one).
 *
 * Build: cc -Wall -Wextra -Werror sev-launch.c $(pkg-config --cflags --libs memenc)
 */
#include "launch-common.h"

#define GUEST_GPA 0x0ull
#define GUEST_PAGES 4
#define GUEST_VCPUS 2

static const char *const guest_state_names[] = {"INVALID", "LAUNCHING", "SECRET", "RUNNING",
                                                "RECEIVING", "SENDING"};

static uint32_t accepted_types(const char *type)
{
    if (!type)
        return (1u << MEM_ENC_VM_TYPE_SEV) | (1u << MEM_ENC_VM_TYPE_SEV_ES);
    if (!strcmp(type, "sev"))
        return 1u << MEM_ENC_VM_TYPE_SEV;
    if (!strcmp(type, "sev-es"))
        return 1u << MEM_ENC_VM_TYPE_SEV_ES;
    fprintf(stderr, "%s: --type is sev or sev-es, not '%s'\n", launch_prog, type);
    exit(LAUNCH_EXIT_USAGE);
}

/* INIT2, or the legacy INIT / ES_INIT on kernels without it (a different measurement). */
static void sev_init(int vm, const struct mem_enc_launch_settings *plan)
{
    uint32_t fw = 0;
    uint64_t status = 0;
    int r;
    switch (plan->init_path) {
    case MEM_ENC_INIT_SEV_INIT2: {
        struct mem_enc_sev_init2_args init = {
            .vmsa_features = plan->vmsa_features,
            .ghcb_version = plan->ghcb_version,
        };
        r = mem_enc_sev_init2(vm, &init, sizeof(init), &fw);
        if (r < 0)
            launch_die_helper("KVM_SEV_INIT2", r, MEM_ENC_VENDOR_SEV, fw);
        launch_step("KVM_SEV_INIT2: vmsa_features 0x%" PRIx64 ", GHCB version %u",
                    plan->vmsa_features, plan->ghcb_version);
        return;
    }
    case MEM_ENC_INIT_SEV_LEGACY:
        r = launch_op(vm, KVM_SEV_INIT, &status);
        fw = (uint32_t)status;
        if (r < 0)
            launch_die_helper("KVM_SEV_INIT", r, MEM_ENC_VENDOR_SEV, fw);
        launch_step("KVM_SEV_INIT (legacy: this kernel has no KVM_SEV_INIT2)");
        return;
    case MEM_ENC_INIT_SEV_ES_LEGACY:
        r = launch_op(vm, KVM_SEV_ES_INIT, &status);
        fw = (uint32_t)status;
        if (r < 0)
            launch_die_helper("KVM_SEV_ES_INIT", r, MEM_ENC_VENDOR_SEV, fw);
        launch_step("KVM_SEV_ES_INIT (legacy: this kernel has no KVM_SEV_INIT2)");
        return;
    default:
        fprintf(stderr, "%s: negotiation chose init path %u, not a SEV one\n", launch_prog,
                plan->init_path);
        exit(LAUNCH_EXIT_FAILED);
    }
}

int main(int argc, char **argv)
{
    launch_prog = "sev-launch";
    struct launch_args args = launch_parse(argc, argv, " [--type sev|sev-es]");
    struct launch_tech tech = {
        .name = args.type ? (strcmp(args.type, "sev") ? "SEV-ES" : "SEV") : "SEV/SEV-ES",
        .request = {
            .accept_vm_types = accepted_types(args.type),
            /* The guest owner's policy: no debugging. Negotiation adds ES for SEV-ES guests
             * (the firmware requires it) and states the policy in plan.sev_policy. */
            .sev_policy = MEM_ENC_SEV_POLICY_NODBG,
        },
    };
    struct launch_host host;
    launch_host_select(&host, &args, &tech);
    const struct mem_enc_launch_settings *plan = &host.plan;
    int es = plan->vm_type == MEM_ENC_VM_TYPE_SEV_ES;
    printf("launching a %s guest\n", es ? "SEV-ES" : "SEV");

    int vm = launch_vm_create(&host);
    launch_step("KVM_CREATE_VM(type %u): vm fd %d", plan->create_vm_type, vm);
    sev_init(vm, plan);

    int sev_fd = launch_sev_open();
    uint32_t fw = 0, handle = 0;
    struct mem_enc_sev_start_args start = {
        .policy = plan->sev_policy,
    };
    int r = mem_enc_sev_launch_start(vm, sev_fd, &start, sizeof(start), &handle, &fw);
    if (r < 0)
        launch_die_helper("KVM_SEV_LAUNCH_START", r, MEM_ENC_VENDOR_SEV, fw);
    launch_step("KVM_SEV_LAUNCH_START: policy 0x%x, guest handle %u", start.policy, handle);

    /* Guest RAM: a memslot (v1: SEV memory is ordinary memory, and kernels before 6.8 have no
     * other), pinned for the guest's lifetime (QEMU registers every RAM block); then the image
     * is encrypted in place and measured. */
    size_t size = GUEST_PAGES * LAUNCH_PAGE_SIZE;
    uint8_t *ram = launch_mem_alloc(size);
    struct kvm_userspace_memory_region slot = {
        .slot = 0,
        .guest_phys_addr = GUEST_GPA,
        .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)ram,
    };
    r = launch_kvm_ioctl(vm, KVM_SET_USER_MEMORY_REGION, (unsigned long)&slot);
    if (r < 0)
        launch_die("KVM_SET_USER_MEMORY_REGION", r);
    r = mem_enc_mem_register_region(vm, ram, size);
    if (r < 0)
        launch_die_helper("KVM_MEMORY_ENCRYPT_REG_REGION", r, MEM_ENC_VENDOR_SEV, 0);
    launch_step("memslot 0 at gpa 0x%llx (%zu KiB), region registered",
                (unsigned long long)GUEST_GPA, size / 1024);
    launch_image_fill(ram, GUEST_PAGES);
    r = mem_enc_sev_launch_update_data(vm, ram, size, &fw);
    if (r < 0)
        launch_die_helper("KVM_SEV_LAUNCH_UPDATE_DATA", r, MEM_ENC_VENDOR_SEV, fw);
    launch_step("KVM_SEV_LAUNCH_UPDATE_DATA: %d pages of guest image", GUEST_PAGES);

    int vcpus[GUEST_VCPUS];
    for (uint32_t i = 0; i < GUEST_VCPUS; i++)
        vcpus[i] = launch_vcpu_create(vm, i);
    launch_step("KVM_CREATE_VCPU: %d vCPUs", GUEST_VCPUS);
    if (es) {
        /* Every vCPU's register state becomes an encrypted, measured VMSA. */
        uint64_t status = 0;
        r = launch_op(vm, KVM_SEV_LAUNCH_UPDATE_VMSA, &status);
        fw = (uint32_t)status;
        if (r < 0)
            launch_die_helper("KVM_SEV_LAUNCH_UPDATE_VMSA", r, MEM_ENC_VENDOR_SEV, fw);
        launch_step("KVM_SEV_LAUNCH_UPDATE_VMSA: %d VMSAs", GUEST_VCPUS);
    }

    /* The measurement's length first, then the measurement: memenc never truncates. */
    size_t len = 0;
    r = mem_enc_sev_launch_measure(vm, NULL, &len, &fw);
    if (r != -ENOSPC)
        launch_die_helper("KVM_SEV_LAUNCH_MEASURE (length query)", r, MEM_ENC_VENDOR_SEV, fw);
    uint8_t *measure = malloc(len);
    if (!measure)
        launch_die("malloc", -ENOMEM);
    r = mem_enc_sev_launch_measure(vm, measure, &len, &fw);
    if (r < 0)
        launch_die_helper("KVM_SEV_LAUNCH_MEASURE", r, MEM_ENC_VENDOR_SEV, fw);
    launch_step("KVM_SEV_LAUNCH_MEASURE: %zu bytes", len);
    /* (A guest owner would check it here and send a secret: KVM_SEV_LAUNCH_SECRET.) */

    uint64_t finish_status = 0;
    r = launch_op(vm, KVM_SEV_LAUNCH_FINISH, &finish_status);
    fw = (uint32_t)finish_status;
    if (r < 0)
        launch_die_helper("KVM_SEV_LAUNCH_FINISH", r, MEM_ENC_VENDOR_SEV, fw);
    launch_step("KVM_SEV_LAUNCH_FINISH");

    uint32_t status_handle = 0, policy = 0, state = 0;
    r = mem_enc_sev_guest_status(vm, &status_handle, &policy, &state, &fw);
    if (r < 0)
        launch_die_helper("KVM_SEV_GUEST_STATUS", r, MEM_ENC_VENDOR_SEV, fw);
    launch_step("KVM_SEV_GUEST_STATUS: handle %u, policy 0x%x, state %s", status_handle, policy,
                state < sizeof(guest_state_names) / sizeof(guest_state_names[0])
                    ? guest_state_names[state] : "?");

    /* LAUNCH_MEASURE is MEASURE (HMAC-SHA256 over the launch digest, 32 bytes) then MNONCE. */
    launch_print_hex("measurement", measure, len);
    launch_print_digest_note("launch digest");
    printf("%s guest launched\n", es ? "SEV-ES" : "SEV");

    free(measure);
    for (int i = 0; i < GUEST_VCPUS; i++)
        close(vcpus[i]);
    r = mem_enc_mem_unregister_region(vm, ram, size);
    if (r < 0)
        launch_die_helper("KVM_MEMORY_ENCRYPT_UNREG_REGION", r, MEM_ENC_VENDOR_SEV, 0);
    close(sev_fd);
    close(vm);
    launch_mem_free(ram, size);
    launch_host_close(&host);
    return 0;
}
