/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * tdx-launch: an Intel TDX guest (TD) build, the way a VMM performs it with memenc.
 *
 *   probe + negotiate (attributes, XFAM) -> KVM_CREATE_VM(TDX) -> KVM_TDX_CAPABILITIES
 *   -> KVM_TDX_INIT_VM (CPUID from the capabilities) -> split irqchip + vCPU
 *   -> KVM_TDX_INIT_VCPU -> guest_memfd + memslot + private
 *   -> KVM_TDX_INIT_MEM_REGION (MEASURE) -> KVM_TDX_FINALIZE_VM
 *
 * It prints the MRTD (on the simulated host; a real host does not show it to the VMM: the
 * guest reads it in its TD report).
 *
 * On the simulated host the vCPU steps cannot run: TDX vCPUs need KVM_CAP_SPLIT_IRQCHIP, and
 * memenc has no call that enables it on a simulated VM (see launch_enable_split_irqchip). The
 * example then builds the TD without them, says so, and exits 77.
 *
 * Usage: tdx-launch [--sim PROFILE | --auto] [--trace] [--inject-fw-status ID:STATUS]
 * Exit: 0 launched, 1 a call failed, 2 usage, 77 no TDX here (without --sim / --auto), or
 * the build was incomplete (simulated host, see above).
 *
 * Build: cc -Wall -Wextra -Werror tdx-launch.c $(pkg-config --cflags --libs memenc)
 */
#include "launch-common.h"

#define GUEST_GPA 0x0ull
#define GUEST_PAGES 16
#define IMAGE_PAGES 4
/* TDVF hands the guest its HOB list address in RCX; here: the page after the image. */
#define HOB_GPA (GUEST_GPA + IMAGE_PAGES * LAUNCH_PAGE_SIZE)
/* CPUID 0x80000008 EAX: physical (bits 0-7), linear (8-15) and guest physical (16-23)
 * address widths. GPAW 48: four-level EPT. */
#define CPUID_80000008_EAX_48 0x00303030u

/* KVM_TDX_CAPABILITIES: the length query, then the call. The caller frees *entries. */
static void tdx_capabilities(int vm, struct mem_enc_tdx_capabilities *caps,
                             struct mem_enc_cpuid_entry **entries, uint32_t *nent)
{
    uint64_t hw = 0;
    *nent = 0;
    int r = mem_enc_tdx_capabilities(vm, caps, sizeof(*caps), NULL, nent, &hw);
    if (r != -ENOSPC && r != 0)
        launch_die_helper("KVM_TDX_CAPABILITIES (size query)", r, MEM_ENC_VENDOR_TDX, hw);
    *entries = calloc(*nent ? *nent : 1, sizeof(**entries));
    if (!*entries)
        launch_die("calloc", -ENOMEM);
    r = mem_enc_tdx_capabilities(vm, caps, sizeof(*caps), *entries, nent, &hw);
    if (r < 0)
        launch_die_helper("KVM_TDX_CAPABILITIES", r, MEM_ENC_VENDOR_TDX, hw);
    launch_step("KVM_TDX_CAPABILITIES: attributes 0x%" PRIx64 ", xfam 0x%" PRIx64
                ", %u configurable CPUID leaves", caps->supported_attrs, caps->supported_xfam,
                *nent);
}

/*
 * The TD's CPUID configuration, from the configurable leaves KVM_TDX_CAPABILITIES reported
 * (each entry's registers are the bits the VMM may set). A VMM sets there what it wants of
 * KVM_GET_SUPPORTED_CPUID; this example sets only what INIT_VM requires, the guest physical
 * address width, and leaves every optional feature off (TSX and WAITPKG are refused anyway).
 */
static void tdx_cpuid(struct mem_enc_cpuid_entry *entries, uint32_t nent)
{
    for (uint32_t i = 0; i < nent; i++) {
        struct mem_enc_cpuid_entry *e = &entries[i];
        uint32_t configurable = e->eax;
        e->eax = e->ebx = e->ecx = e->edx = 0;
        if (e->function == 0x80000008u)
            e->eax = CPUID_80000008_EAX_48 & configurable;
    }
}

int main(int argc, char **argv)
{
    launch_prog = "tdx-launch";
    struct launch_args args = launch_parse(argc, argv, NULL);
    struct launch_tech tech = {
        .name = "TDX",
        .auto_profile = "tdx@6.19",
        .request = {
            .accept_vm_types = 1u << MEM_ENC_VM_TYPE_TDX,
            /* QEMU's default: EPT violations stay with the VMM; x87 and SSE state. */
            .tdx_attributes_optional = MEM_ENC_TDX_ATTR_SEPT_VE_DISABLE,
            .tdx_xfam_required = 0x3,
        },
    };
    struct launch_host host;
    launch_host_select(&host, &args, &tech);
    const struct mem_enc_launch_settings *plan = &host.plan;

    int vm = launch_vm_create(&host);
    launch_step("KVM_CREATE_VM(type %u): vm fd %d", plan->create_vm_type, vm);

    struct mem_enc_tdx_capabilities caps;
    struct mem_enc_cpuid_entry *cpuid;
    uint32_t nent;
    tdx_capabilities(vm, &caps, &cpuid, &nent);
    tdx_cpuid(cpuid, nent);

    uint64_t hw = 0;
    struct mem_enc_tdx_init_vm_args init = {
        .attributes = plan->tdx_attributes,
        .xfam = plan->tdx_xfam,
        .cpuid = cpuid,
        .cpuid_nent = nent,
    };
    int r = mem_enc_tdx_init_vm(vm, &init, sizeof(init), &hw);
    if (r < 0)
        launch_die_helper("KVM_TDX_INIT_VM", r, MEM_ENC_VENDOR_TDX, hw);
    launch_step("KVM_TDX_INIT_VM: attributes 0x%" PRIx64 ", xfam 0x%" PRIx64 ", %u CPUID leaves",
                init.attributes, init.xfam, nent);

    /* TDX vCPUs need the split irqchip (the local APIC is virtualised by the TDX module). */
    int vcpu = -1;
    r = launch_enable_split_irqchip(&host, vm);
    if (r == -EOPNOTSUPP && host.profile) {
        launch_step("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP): NOT POSSIBLE on the simulated host: "
                    "memenc has no call for it; skipping the vCPU, INIT_VCPU and "
                    "INIT_MEM_REGION");
    } else if (r < 0) {
        launch_die("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)", r);
    } else {
        launch_step("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)");
        vcpu = launch_vcpu_create(&host, vm, 0);
        r = mem_enc_tdx_init_vcpu(vcpu, HOB_GPA, &hw);
        if (r < 0)
            launch_die_helper("KVM_TDX_INIT_VCPU", r, MEM_ENC_VENDOR_TDX, hw);
        launch_step("KVM_CREATE_VCPU + KVM_TDX_INIT_VCPU: vCPU 0, rcx 0x%llx",
                    (unsigned long long)HOB_GPA);
    }

    uint64_t size = GUEST_PAGES * LAUNCH_PAGE_SIZE;
    uint8_t *shared = launch_mem_alloc(size);
    int gmem = launch_private_memory(vm, GUEST_GPA, shared, size);
    launch_image_fill(shared, IMAGE_PAGES);

    if (vcpu >= 0) {
        /* TDH.MEM.PAGE.ADD copies the image into the private pages; MEASURE extends MRTD. */
        struct mem_enc_tdx_init_mem_region_args region = {
            .source = shared,
            .gpa = GUEST_GPA,
            .nr_pages = IMAGE_PAGES,
            .flags = MEM_ENC_TDX_MEASURE_MEMORY_REGION,
        };
        uint64_t reached = 0;
        r = mem_enc_tdx_init_mem_region(vcpu, &region, sizeof(region), &reached, &hw);
        if (r < 0) {
            fprintf(stderr, "%s: INIT_MEM_REGION stopped at gpa 0x%" PRIx64 "\n", launch_prog,
                    reached);
            launch_die_helper("KVM_TDX_INIT_MEM_REGION", r, MEM_ENC_VENDOR_TDX, hw);
        }
        launch_step("KVM_TDX_INIT_MEM_REGION(MEASURE): %d pages of guest image, gpa 0x%" PRIx64
                    "-0x%" PRIx64, IMAGE_PAGES, region.gpa, reached - 1);
    }

    r = mem_enc_tdx_finalize_vm(vm, &hw);
    if (r < 0)
        launch_die_helper("KVM_TDX_FINALIZE_VM", r, MEM_ENC_VENDOR_TDX, hw);
    launch_step("KVM_TDX_FINALIZE_VM");

    launch_print_sim_digest(&host, vm, vcpu >= 0 ? "MRTD" : "MRTD (no pages added)");
    int exit_code = 0;
    if (vcpu >= 0) {
        printf("TDX guest launched\n");
    } else {
        printf("INCOMPLETE: TD built without vCPUs or pages (no split-irqchip call for "
               "simulated VMs in memenc)\n");
        exit_code = LAUNCH_EXIT_SKIP;
    }

    free(cpuid);
    if (vcpu >= 0)
        close(vcpu);
    close(gmem);
    close(vm);
    launch_mem_free(shared, size);
    launch_host_close(&host);
    return exit_code;
}
