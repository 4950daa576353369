/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * tdx-launch: an Intel TDX guest (TD) build, the way a VMM performs it with memenc.
 *
 *   probe + negotiate (attributes, XFAM) -> KVM_CREATE_VM(TDX) -> KVM_SET_TSC_KHZ
 *   -> KVM_TDX_CAPABILITIES -> KVM_TDX_INIT_VM (CPUID from the capabilities)
 *   -> split irqchip + vCPU -> KVM_TDX_INIT_VCPU -> guest_memfd + memslot + private
 *   -> KVM_TDX_INIT_MEM_REGION (MEASURE) -> KVM_TDX_FINALIZE_VM
 *
 * It prints the MRTD (on the simulated host; a real host does not show it to the VMM: the
 * guest reads it in its TD report).
 *
 * Usage: tdx-launch [--trace]
 *   (memenc-sim run --profile PROFILE -- tdx-launch: on a simulated host)
 * Exit: 0 launched, 1 a call failed, 2 usage, 77 no TDX here (run it under memenc-sim to simulate one).
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
/* The TD's TSC frequency, fixed by INIT_VM (the TDX module takes it in units of 25 MHz). */
#define TSC_KHZ 2000000u
/* Interrupt routes for the user-space IOAPIC (QEMU's number). */
#define IOAPIC_PINS 24u

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
    int r = launch_kvm_ioctl(vm, KVM_SET_TSC_KHZ, TSC_KHZ);
    if (r < 0)
        launch_die("KVM_SET_TSC_KHZ", r);
    launch_step("KVM_SET_TSC_KHZ: %u kHz", TSC_KHZ);

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
    r = mem_enc_tdx_init_vm(vm, &init, sizeof(init), &hw);
    if (r < 0)
        launch_die_helper("KVM_TDX_INIT_VM", r, MEM_ENC_VENDOR_TDX, hw);
    launch_step("KVM_TDX_INIT_VM: attributes 0x%" PRIx64 ", xfam 0x%" PRIx64 ", %u CPUID leaves",
                init.attributes, init.xfam, nent);

    /* TDX vCPUs need the split irqchip (the local APIC is virtualised by the TDX module). */
    struct kvm_enable_cap split = {.cap = KVM_CAP_SPLIT_IRQCHIP, .args = {IOAPIC_PINS}};
    r = launch_kvm_ioctl(vm, KVM_ENABLE_CAP, (unsigned long)&split);
    if (r < 0)
        launch_die("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)", r);
    launch_step("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP): %u IOAPIC pins", IOAPIC_PINS);
    int vcpu = launch_vcpu_create(vm, 0);
    r = mem_enc_tdx_init_vcpu(vcpu, HOB_GPA, &hw);
    if (r < 0)
        launch_die_helper("KVM_TDX_INIT_VCPU", r, MEM_ENC_VENDOR_TDX, hw);
    launch_step("KVM_CREATE_VCPU + KVM_TDX_INIT_VCPU: vCPU 0, rcx 0x%llx",
                (unsigned long long)HOB_GPA);

    uint64_t size = GUEST_PAGES * LAUNCH_PAGE_SIZE;
    uint8_t *shared = launch_mem_alloc(size);
    int gmem = launch_private_memory(vm, GUEST_GPA, shared, size);
    launch_image_fill(shared, IMAGE_PAGES);

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

    r = launch_op(vm, 4 /* KVM_TDX_FINALIZE_VM (enum kvm_tdx_cmd_id, asm/kvm.h of 6.16+) */, &hw);
    if (r < 0)
        launch_die_helper("KVM_TDX_FINALIZE_VM", r, MEM_ENC_VENDOR_TDX, hw);
    launch_step("KVM_TDX_FINALIZE_VM");

    launch_print_digest_note("MRTD");
    printf("TDX guest launched\n");

    free(cpuid);
    close(vcpu);
    close(gmem);
    close(vm);
    launch_mem_free(shared, size);
    launch_host_close(&host);
    return 0;
}
