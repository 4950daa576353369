/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * The kernel's KVM uAPI (include/uapi/linux/kvm.h, arch/x86/include/uapi/asm/kvm.h) newer than
 * this system's <linux/kvm.h>: VM types, SEV and TDX commands, page types, guest_memfd,
 * memslots v2 and memory attributes, spelled out as the kernel defines them. Everything is
 * named x_ / X_ so it never clashes with a newer header that has the same thing. Shared by the
 * raw-ioctl test programs in this folder (raw-launch.c, bench-launch.c, bench-boundary.c,
 * kvm-calls.c, kvm-run-plain.c); the _Static_asserts pin the kernel's layouts.
 */
#ifndef MEMENC_TESTS_C_KVM_UAPI_H
#define MEMENC_TESTS_C_KVM_UAPI_H

#include <stdint.h>
#include <linux/kvm.h>

/* ---- capabilities ------------------------------------------------------------------------ */
#define X_KVM_CAP_USER_MEMORY2 231
#define X_KVM_CAP_MEMORY_FAULT_INFO 232
#define X_KVM_CAP_MEMORY_ATTRIBUTES 233
#define X_KVM_CAP_GUEST_MEMFD 234
#define X_KVM_CAP_VM_TYPES 235
#define X_KVM_CAP_GUEST_MEMFD_FLAGS 244

/* ---- VM types, exit reasons, device attribute groups -------------------------------------- */
#define X_KVM_X86_SEV_ES_VM 3
#define X_KVM_X86_SNP_VM 4
#define X_KVM_X86_TDX_VM 5
#define X_KVM_EXIT_SYSTEM_EVENT 24
#define X_KVM_X86_GRP_SEV 1

/* ---- SEV commands (KVM_MEMORY_ENCRYPT_OP) and SNP page types ------------------------------ */
#define X_KVM_SEV_INIT2 22
#define X_KVM_SEV_SNP_LAUNCH_START 100
#define X_KVM_SEV_SNP_LAUNCH_UPDATE 101
#define X_KVM_SEV_SNP_LAUNCH_FINISH 102
#define X_PAGE_TYPE_NORMAL 1
#define X_PAGE_TYPE_ZERO 3
#define X_PAGE_TYPE_SECRETS 5
#define X_PAGE_TYPE_CPUID 6

/* ---- TDX commands (KVM_MEMORY_ENCRYPT_OP) ------------------------------------------------- */
#define X_KVM_TDX_INIT_VM 1
#define X_KVM_TDX_INIT_VCPU 2
#define X_KVM_TDX_INIT_MEM_REGION 3
#define X_KVM_TDX_MEASURE_MEMORY_REGION 1u
#define X_TDX_ATTR_SEPT_VE_DISABLE (1ull << 28)

/* ---- guest_memfd, memslots, memory attributes --------------------------------------------- */
#define X_KVM_MEM_GUEST_MEMFD (1u << 2)
#define X_KVM_MEMORY_ATTRIBUTE_PRIVATE (1ull << 3)
#define X_GUEST_MEMFD_FLAG_MMAP (1ull << 0)
#define X_GUEST_MEMFD_FLAG_INIT_SHARED (1ull << 1)

struct x_kvm_sev_init {
    uint64_t vmsa_features;
    uint32_t flags;
    uint16_t ghcb_version;
    uint16_t pad1;
    uint32_t pad2[8];
};
struct x_kvm_sev_snp_launch_start {
    uint64_t policy;
    uint8_t gosvw[16];
    uint16_t flags;
    uint8_t pad0[6];
    uint64_t pad1[4];
};
struct x_kvm_sev_snp_launch_update {
    uint64_t gfn_start;
    uint64_t uaddr;
    uint64_t len;
    uint8_t type;
    uint8_t pad0;
    uint16_t flags;
    uint32_t pad1;
    uint64_t pad2[4];
};
struct x_kvm_sev_snp_launch_finish {
    uint64_t id_block_uaddr;
    uint64_t id_auth_uaddr;
    uint8_t id_block_en;
    uint8_t auth_key_en;
    uint8_t vcek_disabled;
    uint8_t host_data[32];
    uint8_t pad0[3];
    uint16_t flags;
    uint64_t pad1[4];
};
struct x_kvm_tdx_cmd {
    uint32_t id;
    uint32_t flags;
    uint64_t data;
    uint64_t hw_error;
};
struct x_kvm_tdx_init_vm {
    uint64_t attributes;
    uint64_t xfam;
    uint64_t mrconfigid[6];
    uint64_t mrowner[6];
    uint64_t mrownerconfig[6];
    uint64_t reserved[12];
    struct kvm_cpuid2 cpuid; /* nent entries follow */
};
struct x_kvm_tdx_init_mem_region {
    uint64_t source_addr;
    uint64_t gpa;
    uint64_t nr_pages;
};
struct x_kvm_create_guest_memfd {
    uint64_t size;
    uint64_t flags;
    uint64_t reserved[6];
};
struct x_kvm_userspace_memory_region2 {
    uint32_t slot;
    uint32_t flags;
    uint64_t guest_phys_addr;
    uint64_t memory_size;
    uint64_t userspace_addr;
    uint64_t guest_memfd_offset;
    uint32_t guest_memfd;
    uint32_t pad1;
    uint64_t pad2[14];
};
struct x_kvm_memory_attributes {
    uint64_t address;
    uint64_t size;
    uint64_t attributes;
    uint64_t flags;
};
/* kvm_device_attr exists in 6.1 headers; spelled out so older ones build too. */
struct x_kvm_device_attr {
    uint32_t flags;
    uint32_t group;
    uint64_t attr;
    uint64_t addr;
};

/* ---- ioctls -------------------------------------------------------------------------------- */
#define X_KVM_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct x_kvm_create_guest_memfd)
#define X_KVM_SET_USER_MEMORY_REGION2 _IOW(KVMIO, 0x49, struct x_kvm_userspace_memory_region2)
#define X_KVM_SET_MEMORY_ATTRIBUTES _IOW(KVMIO, 0xd2, struct x_kvm_memory_attributes)
#define X_KVM_GET_DEVICE_ATTR _IOW(KVMIO, 0xe2, struct x_kvm_device_attr)
#define X_KVM_HAS_DEVICE_ATTR _IOW(KVMIO, 0xe3, struct x_kvm_device_attr)

/* ---- the kernel's layouts ------------------------------------------------------------------ */
_Static_assert(sizeof(struct x_kvm_sev_init) == 48, "kvm_sev_init");
_Static_assert(sizeof(struct x_kvm_sev_snp_launch_start) == 64, "snp_launch_start");
_Static_assert(sizeof(struct x_kvm_sev_snp_launch_update) == 64, "snp_launch_update");
_Static_assert(sizeof(struct x_kvm_sev_snp_launch_finish) == 88, "snp_launch_finish");
_Static_assert(sizeof(struct x_kvm_tdx_init_vm) == 264, "kvm_tdx_init_vm");
_Static_assert(sizeof(struct x_kvm_create_guest_memfd) == 64, "kvm_create_guest_memfd");
_Static_assert(sizeof(struct x_kvm_userspace_memory_region2) == 160, "region2");
_Static_assert(sizeof(struct kvm_sev_cmd) == 24, "kvm_sev_cmd");

#endif
