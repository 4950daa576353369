/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * snp-launch: an AMD SEV-SNP guest launch, the way a VMM performs it with memenc.
 *
 *   probe + negotiate (VM type, vmsa_features, guest policy) -> KVM_CREATE_VM(SNP)
 *   -> KVM_SEV_INIT2 -> SNP_LAUNCH_START (/dev/sev) -> guest_memfd + memslot + private
 *   -> SNP_LAUNCH_UPDATE (image pages, a zero page, the secrets page, the CPUID page)
 *   -> vCPUs -> SNP_LAUNCH_FINISH
 *
 * It prints the launch digest (on the simulated host; a real host does not show it to the
 * VMM: the guest reads it in its attestation report).
 *
 * Usage: snp-launch [--trace]
 *   (memenc-sim run --profile PROFILE -- snp-launch: on a simulated host)
 * Exit: 0 launched, 1 a call failed, 2 usage, 77 no SEV-SNP here (run it under memenc-sim to simulate one).
 *
 * Build: cc -Wall -Wextra -Werror snp-launch.c $(pkg-config --cflags --libs memenc)
 */
#include "launch-common.h"

/* Guest-physical layout: the image, then one page of each special type. */
#define GUEST_GPA 0x0ull
#define GUEST_PAGES 16
#define IMAGE_PAGES 4
#define ZERO_PAGE IMAGE_PAGES
#define SECRETS_PAGE (IMAGE_PAGES + 1)
#define CPUID_PAGE (IMAGE_PAGES + 2)
#define GUEST_VCPUS 2

/* Adds pages [first, first + count) of the guest, from the same pages of "shared". */
static void launch_update(int vm, int sev_fd, uint8_t *shared, uint64_t first, uint64_t count,
                          uint32_t type, const char *what)
{
    struct mem_enc_snp_launch_update_args update = {
        .gfn_start = (GUEST_GPA / LAUNCH_PAGE_SIZE) + first,
        .src = type == MEM_ENC_SNP_PAGE_TYPE_ZERO ? NULL : shared + first * LAUNCH_PAGE_SIZE,
        .len = count * LAUNCH_PAGE_SIZE,
        .page_type = type,
    };
    uint64_t reached = 0;
    uint32_t fw = 0;
    int r = mem_enc_snp_launch_update(vm, sev_fd, &update, sizeof(update), &reached, &fw);
    if (r < 0) {
        fprintf(stderr, "%s: %s stopped at gfn 0x%" PRIx64 "\n", launch_prog, what, reached);
        launch_die_helper("KVM_SEV_SNP_LAUNCH_UPDATE", r, MEM_ENC_VENDOR_SEV, fw);
    }
    launch_step("KVM_SEV_SNP_LAUNCH_UPDATE: %s, gfn 0x%" PRIx64 "-0x%" PRIx64, what,
                update.gfn_start, reached - 1);
}

int main(int argc, char **argv)
{
    launch_prog = "snp-launch";
    struct launch_args args = launch_parse(argc, argv, NULL);
    struct launch_tech tech = {
        .name = "SEV-SNP",
        .request = {
            .accept_vm_types = 1u << MEM_ENC_VM_TYPE_SNP,
            /* QEMU's default policy: SMT allowed (bit 17, must be one, is added by memenc). */
            .snp_policy_required = MEM_ENC_SNP_POLICY_SMT,
            .vmsa_features_optional = MEM_ENC_SEV_FEAT_DEBUG_SWAP,
        },
    };
    struct launch_host host;
    launch_host_select(&host, &args, &tech);
    const struct mem_enc_launch_settings *plan = &host.plan;

    int vm = launch_vm_create(&host);
    launch_step("KVM_CREATE_VM(type %u): vm fd %d", plan->create_vm_type, vm);
    uint32_t fw = 0;
    struct mem_enc_sev_init2_args init = {
        .vmsa_features = plan->vmsa_features,
        .ghcb_version = plan->ghcb_version,
    };
    int r = mem_enc_sev_init2(vm, &init, sizeof(init), &fw);
    if (r < 0)
        launch_die_helper("KVM_SEV_INIT2", r, MEM_ENC_VENDOR_SEV, fw);
    launch_step("KVM_SEV_INIT2: vmsa_features 0x%" PRIx64 ", GHCB version %u",
                plan->vmsa_features, plan->ghcb_version);

    int sev_fd = launch_sev_open();
    struct mem_enc_snp_launch_start_args start = {.policy = plan->snp_policy};
    r = mem_enc_snp_launch_start(vm, sev_fd, &start, sizeof(start), &fw);
    if (r < 0)
        launch_die_helper("KVM_SEV_SNP_LAUNCH_START", r, MEM_ENC_VENDOR_SEV, fw);
    launch_step("KVM_SEV_SNP_LAUNCH_START: policy 0x%" PRIx64, start.policy);

    /* The shared side of the memslot doubles as the staging buffer for the launch pages. */
    uint64_t size = GUEST_PAGES * LAUNCH_PAGE_SIZE;
    uint8_t *shared = launch_mem_alloc(size);
    int gmem = launch_private_memory(vm, GUEST_GPA, shared, size);
    launch_image_fill(shared, IMAGE_PAGES);
    /* The secrets page is filled by the firmware, the CPUID page checked by it; a real VMM
     * fills the CPUID table (count, then entries) from KVM_GET_SUPPORTED_CPUID. Here: an
     * empty table. */
    memset(shared + SECRETS_PAGE * LAUNCH_PAGE_SIZE, 0, LAUNCH_PAGE_SIZE);
    memset(shared + CPUID_PAGE * LAUNCH_PAGE_SIZE, 0, LAUNCH_PAGE_SIZE);

    launch_update(vm, sev_fd, shared, 0, IMAGE_PAGES, MEM_ENC_SNP_PAGE_TYPE_NORMAL,
                  "guest image (normal)");
    launch_update(vm, sev_fd, shared, ZERO_PAGE, 1, MEM_ENC_SNP_PAGE_TYPE_ZERO, "zero page");
    launch_update(vm, sev_fd, shared, SECRETS_PAGE, 1, MEM_ENC_SNP_PAGE_TYPE_SECRETS,
                  "secrets page");
    launch_update(vm, sev_fd, shared, CPUID_PAGE, 1, MEM_ENC_SNP_PAGE_TYPE_CPUID, "CPUID page");

    /* Every vCPU exists before LAUNCH_FINISH, which encrypts and measures their VMSAs. */
    int vcpus[GUEST_VCPUS];
    for (uint32_t i = 0; i < GUEST_VCPUS; i++)
        vcpus[i] = launch_vcpu_create(vm, i);
    launch_step("KVM_CREATE_VCPU: %d vCPUs", GUEST_VCPUS);

    struct mem_enc_snp_launch_finish_args finish = {0}; /* no ID block, host_data zero */
    r = mem_enc_snp_launch_finish(vm, sev_fd, &finish, sizeof(finish), &fw);
    if (r < 0)
        launch_die_helper("KVM_SEV_SNP_LAUNCH_FINISH", r, MEM_ENC_VENDOR_SEV, fw);
    launch_step("KVM_SEV_SNP_LAUNCH_FINISH: %d VMSAs measured", GUEST_VCPUS);

    launch_print_digest_note("launch digest");
    printf("SEV-SNP guest launched\n");

    for (int i = 0; i < GUEST_VCPUS; i++)
        close(vcpus[i]);
    close(gmem);
    close(sev_fd);
    close(vm);
    launch_mem_free(shared, size);
    launch_host_close(&host);
    return 0;
}
