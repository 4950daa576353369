//! The SEV-ES / SEV-SNP initial VMSA page, built the way Linux KVM's `sev_es_sync_vmsa()`
//! (arch/x86/kvm/svm/sev.c) builds it from a vCPU's state.
//!
//! Why: the launch measurement (SEV-ES LAUNCH_MEASURE, the SNP launch digest) covers every
//! vCPU's VMSA, so the simulator must produce the same bytes a real host does. Those bytes are
//! KVM's vCPU reset state (`kvm_vcpu_reset` + `init_vmcb`) transformed by every register-setting
//! vCPU ioctl the VMM issued before KVM_SEV_LAUNCH_UPDATE_VMSA / KVM_SEV_SNP_LAUNCH_FINISH.
//!
//! The model keeps two images, as KVM does:
//! - the VMCB save area (`struct vmcb_save_area`, the first [`VMCB_SAVE_SIZE`] bytes of the
//!   page): segments, CPL, EFER, CR0/CR3/CR4, DR7, RFLAGS, the syscall/sysenter MSRs, G_PAT,
//!   DBGCTL, SPEC_CTRL. `sev_es_sync_vmsa()` `memcpy`s it to the VMSA;
//! - `vcpu->arch`: GPRs and RIP, XCR0, XSS, PKRU, DR6 and the guest FPU state (`fpstate`),
//!   which `sev_es_sync_vmsa()` writes over the copy.
//!
//! Kernel versions (sources: torvalds/linux sev.c `sev_es_sync_vmsa`, the 2024 patches
//! "KVM: SEV: store VMSA features in kvm_sev_info" and "SEV: disable SEV-ES DebugSwap by
//! default", QEMU/`sev-snp-measure`):
//! - FPU/x87/XMM/YMM is synced only since 6.10 and only for `vm_type != KVM_X86_DEFAULT_VM`
//!   (KVM_SEV_INIT2 VMs); KVM_SEV_ES_INIT VMs and all kernels before 6.10 leave 0x400-0x66F
//!   zero ("Skip FPU and AVX setup with KVM_SEV_ES_INIT to avoid breaking older
//!   measurements"). Selected with [`SyncVariant`].
//! - `sev_features` (0x3B0): before 6.5 never written (0); 6.5-6.9 `DEBUG_SWAP` when the
//!   `kvm_amd.debug_swap` module parameter was on (default on in 6.5, off after the March 2024
//!   fix); 6.10+ `sev->vmsa_features` (the INIT2 `vmsa_features`, OR SNP_ACTIVE for SNP VMs,
//!   0 for KVM_SEV_ES_INIT). The caller passes the resulting value to [`sync_vmsa`].
//! - XCR0, PKRU, XSS and DR6 come from `vcpu->arch` in the versions checked (current source
//!   and the 6.5-6.10 patches); older kernels were not checked for DR6.
//!
//! Not modelled (see each setter): CPUID-dependent validity masks (the host's are used), the
//! local APIC, TSC/TSC_AUX, CET, nested state, SMM, `KVM_SET_VCPU_EVENTS`, and refusal of the
//! setters once the vCPU state is protected (the caller tracks that).

use kvm_bindings::{
    kvm_debugregs, kvm_dtable, kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs,
    kvm_sregs2, kvm_xcrs,
};

/// Size of the VMSA page.
pub const VMSA_SIZE: usize = 4096;
/// `sizeof(struct vmcb_save_area)`: the prefix `sev_es_sync_vmsa()` copies from the VMCB.
pub const VMCB_SAVE_SIZE: usize = 0x2E8;

/// Byte offsets in `struct sev_es_save_area` (arch/x86/include/asm/svm.h).
pub mod off {
    pub const ES: usize = 0x000;
    pub const CS: usize = 0x010;
    pub const SS: usize = 0x020;
    pub const DS: usize = 0x030;
    pub const FS: usize = 0x040;
    pub const GS: usize = 0x050;
    pub const GDTR: usize = 0x060;
    pub const LDTR: usize = 0x070;
    pub const IDTR: usize = 0x080;
    pub const TR: usize = 0x090;
    pub const CPL: usize = 0x0CB;
    pub const EFER: usize = 0x0D0;
    pub const XSS: usize = 0x140;
    pub const CR4: usize = 0x148;
    pub const CR3: usize = 0x150;
    pub const CR0: usize = 0x158;
    pub const DR7: usize = 0x160;
    pub const DR6: usize = 0x168;
    pub const RFLAGS: usize = 0x170;
    pub const RIP: usize = 0x178;
    pub const RSP: usize = 0x1D8;
    pub const RAX: usize = 0x1F8;
    pub const STAR: usize = 0x200;
    pub const LSTAR: usize = 0x208;
    pub const CSTAR: usize = 0x210;
    pub const SFMASK: usize = 0x218;
    pub const KERNEL_GS_BASE: usize = 0x220;
    pub const SYSENTER_CS: usize = 0x228;
    pub const SYSENTER_ESP: usize = 0x230;
    pub const SYSENTER_EIP: usize = 0x238;
    pub const CR2: usize = 0x240;
    pub const G_PAT: usize = 0x268;
    pub const DBGCTL: usize = 0x270;
    /// `vmcb_save_area.spec_ctrl`; reserved in `sev_es_save_area`, but inside the memcpy.
    pub const SPEC_CTRL: usize = 0x2E0;
    pub const PKRU: usize = 0x2E8;
    pub const RCX: usize = 0x308;
    pub const RDX: usize = 0x310;
    pub const RBX: usize = 0x318;
    pub const RBP: usize = 0x328;
    pub const RSI: usize = 0x330;
    pub const RDI: usize = 0x338;
    /// R8; R9..R15 follow at 8-byte steps.
    pub const R8: usize = 0x340;
    pub const SEV_FEATURES: usize = 0x3B0;
    pub const XCR0: usize = 0x3E8;
    pub const X87_DP: usize = 0x400;
    pub const MXCSR: usize = 0x408;
    pub const X87_FTW: usize = 0x40C;
    pub const X87_FSW: usize = 0x40E;
    pub const X87_FCW: usize = 0x410;
    pub const X87_FOP: usize = 0x412;
    pub const X87_DS: usize = 0x414;
    pub const X87_CS: usize = 0x416;
    pub const X87_RIP: usize = 0x418;
    pub const FPREG_X87: usize = 0x420;
    pub const FPREG_XMM: usize = 0x470;
    pub const FPREG_YMM: usize = 0x570;
}

/// Which `sev_es_sync_vmsa()` behaviour to reproduce (see the module doc for the evidence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncVariant {
    /// Copy x87/SSE/YMM state from the guest fpstate to 0x400-0x66F: Linux 6.10+ for VMs
    /// created with a non-default `vm_type` (KVM_SEV_INIT2). False for all earlier kernels
    /// and for KVM_SEV_ES_INIT (`KVM_X86_DEFAULT_VM`) VMs on any kernel.
    pub sync_fpu: bool,
}

impl SyncVariant {
    /// Before 6.10, or a KVM_SEV_ES_INIT (default `vm_type`) VM on 6.10+.
    pub const LEGACY: Self = Self { sync_fpu: false };
    /// 6.10+ with `vm_type` KVM_X86_SEV_ES_VM or KVM_X86_SNP_VM (KVM_SEV_INIT2).
    pub const INIT2: Self = Self { sync_fpu: true };
}

/// Facts about the host CPU that change what KVM stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostCpu {
    /// Host CR4.MCE: `svm_set_cr4()` ORs it into the guest's CR4 (set on any normal host).
    pub cr4_mce: bool,
    /// X86_FEATURE_V_SPEC_CTRL: guest SPEC_CTRL then lives in `vmcb->save.spec_ctrl` (and so
    /// in the VMSA copy at 0x2E0) instead of `svm->spec_ctrl`.
    pub v_spec_ctrl: bool,
    /// XSAVE features userspace may load (KVM: the guest's CPUID-derived `user_xfeatures` /
    /// `guest_supported_xcr0`; modelled as one host-wide mask).
    pub xfeatures: u64,
    /// IA32_XSS bits KVM supports (`kvm_caps.supported_xss`).
    pub supported_xss: u64,
    /// Standard-format XSAVE offset of PKRU (CPUID.(0xD,9).EBX): 2688 on Intel and on AMD
    /// parts that have PKU.
    pub pkru_offset: usize,
}

impl Default for HostCpu {
    fn default() -> Self {
        Self {
            cr4_mce: true,
            v_spec_ctrl: true,
            xfeatures: XFEATURE_FP | XFEATURE_SSE | XFEATURE_YMM | XFEATURE_PKRU,
            supported_xss: 0,
            pkru_offset: 2688,
        }
    }
}

const XFEATURE_FP: u64 = 1 << 0;
const XFEATURE_SSE: u64 = 1 << 1;
const XFEATURE_YMM: u64 = 1 << 2;
const XFEATURE_BNDREGS: u64 = 1 << 3;
const XFEATURE_BNDCSR: u64 = 1 << 4;
const XFEATURE_AVX512: u64 = 0b111 << 5;
const XFEATURE_PKRU: u64 = 1 << 9;
const XFEATURE_XTILE: u64 = 0b11 << 17;

const CR0_PE: u64 = 1 << 0;
const CR0_ET: u64 = 1 << 4;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_MCE: u64 = 1 << 6;
const CR4_VMXE: u64 = 1 << 13;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_SVME: u64 = 1 << 12;
/// DR6_ACTIVE_LOW: DR6 at reset.
const DR6_RESET: u64 = 0xffff_0ff0;
/// DR7_FIXED_1: DR7 at reset; `sev_es_sync_vmsa()` refuses any other bit.
const DR7_FIXED_1: u64 = 0x400;
/// MSR_IA32_CR_PAT at reset (`vcpu->arch.pat`, copied to `vmcb->save.g_pat` by `init_vmcb`).
const PAT_RESET: u64 = 0x0007_0406_0007_0406;
const KVM_GUESTDBG_ENABLE: u32 = 1;
const KVM_SREGS2_FLAGS_PDPTRS_VALID: u64 = 1;

/// The fpstate image: standard (non-compacted) XSAVE layout, as KVM_SET_XSAVE's uabi buffer.
const FPSTATE_SIZE: usize = 4096;
const XSAVE_HDR: usize = 512;
const XSAVE_YMM: usize = 576;

const SEG_ES: usize = 0;
const SEG_CS: usize = 1;
const SEG_SS: usize = 2;
const SEG_DS: usize = 3;
const SEG_FS: usize = 4;
const SEG_GS: usize = 5;
const SEG_GDTR: usize = 6;
const SEG_LDTR: usize = 7;
const SEG_IDTR: usize = 8;
const SEG_TR: usize = 9;

/// `struct vmcb_seg`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmcbSeg {
    pub selector: u16,
    pub attrib: u16,
    pub limit: u32,
    pub base: u64,
}

impl VmcbSeg {
    /// `svm_set_segment()`: kvm_segment to the VMCB's packed attribute word. P is cleared for
    /// an `unusable` segment (AMD has no unusable bit); bits 12-15 stay zero.
    pub fn from_kvm(s: &kvm_segment) -> Self {
        let present = (s.present & 1 != 0) && s.unusable == 0;
        let attrib = u16::from(s.type_ & 0xf)
            | u16::from(s.s & 1) << 4
            | u16::from(s.dpl & 3) << 5
            | u16::from(present) << 7
            | u16::from(s.avl & 1) << 8
            | u16::from(s.l & 1) << 9
            | u16::from(s.db & 1) << 10
            | u16::from(s.g & 1) << 11;
        Self {
            selector: s.selector,
            attrib,
            limit: s.limit,
            base: s.base,
        }
    }

    fn write(&self, page: &mut [u8], at: usize) {
        put16(page, at, self.selector);
        put16(page, at + 2, self.attrib);
        put32(page, at + 4, self.limit);
        put64(page, at + 8, self.base);
    }
}

/// Everything `sev_es_sync_vmsa()` reads for one vCPU.
#[derive(Clone, Debug)]
pub struct VcpuState {
    host: HostCpu,
    // --- vmcb->save (copied wholesale) ---
    /// ES, CS, SS, DS, FS, GS, GDTR, LDTR, IDTR, TR, in VMSA order.
    segs: [VmcbSeg; 10],
    cpl: u8,
    vmcb_efer: u64,
    vmcb_cr0: u64,
    vmcb_cr3: u64,
    vmcb_cr4: u64,
    vmcb_dr7: u64,
    rflags: u64,
    star: u64,
    lstar: u64,
    cstar: u64,
    sfmask: u64,
    kernel_gs_base: u64,
    sysenter_cs: u64,
    sysenter_esp: u64,
    sysenter_eip: u64,
    g_pat: u64,
    dbgctl: u64,
    vmcb_spec_ctrl: u64,
    // --- vcpu->arch ---
    /// RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15 (KVM's VCPU_REGS_* order).
    regs: [u64; 16],
    rip: u64,
    cr0: u64,
    cr2: u64,
    cr3: u64,
    cr4: u64,
    efer: u64,
    xcr0: u64,
    xss: u64,
    pkru: u32,
    dr6: u64,
    dr7: u64,
    guest_debug: bool,
    cpuid_1_eax: Option<u32>,
    /// `vcpu->arch.guest_fpu.fpstate->regs.xsave`, standard layout.
    fpstate: Box<[u8; FPSTATE_SIZE]>,
}

const R_RAX: usize = 0;
const R_RCX: usize = 1;
const R_RDX: usize = 2;
const R_RBX: usize = 3;
const R_RSP: usize = 4;
const R_RBP: usize = 5;
const R_RSI: usize = 6;
const R_RDI: usize = 7;

impl VcpuState {
    /// The state of a vCPU right after KVM_CREATE_VCPU (`kvm_vcpu_reset(vcpu, false)`).
    ///
    /// `init_vmcb`: CS 0xf000/0xffff0000/0xffff/attrib 0x9a, ES/SS/DS/FS/GS 0/0/0xffff/0x92,
    /// GDTR/IDTR limit 0xffff, LDTR 0x82 and TR 0x83 (limit 0xffff), G_PAT = reset PAT.
    /// `kvm_vcpu_reset`: RIP 0xfff0, RFLAGS 0x2, DR6 0xffff0ff0, DR7 0x400, XCR0 1,
    /// CR0 = ET|NW|CD stored by `svm_set_cr0` as 0x10 (KVM_X86_QUIRK_CD_NW_CLEARED, on by
    /// default), CR4 0 stored as host MCE, EFER 0 stored as SVME; RDX = CPUID.1.EAX, or 0x600
    /// when the vCPU has no CPUID yet — which is always the case at KVM_CREATE_VCPU, so pass
    /// `None` there (Linux 5.16+; earlier kernels wrote 0). The guest fpstate is
    /// `fpstate_init_user()`: FCW 0x37f, MXCSR 0x1f80, XSTATE_BV 0.
    pub fn reset(host: HostCpu, cpuid_1_eax: Option<u32>) -> Self {
        let data = VmcbSeg {
            selector: 0,
            attrib: 0x92,
            limit: 0xffff,
            base: 0,
        };
        let mut segs = [data; 10];
        segs[SEG_CS] = VmcbSeg {
            selector: 0xf000,
            attrib: 0x9a,
            limit: 0xffff,
            base: 0xffff_0000,
        };
        segs[SEG_GDTR] = VmcbSeg {
            limit: 0xffff,
            ..VmcbSeg::default()
        };
        segs[SEG_IDTR] = segs[SEG_GDTR];
        segs[SEG_LDTR] = VmcbSeg {
            attrib: 0x82,
            limit: 0xffff,
            ..VmcbSeg::default()
        };
        segs[SEG_TR] = VmcbSeg {
            attrib: 0x83,
            limit: 0xffff,
            ..VmcbSeg::default()
        };
        let mut fpstate = Box::new([0u8; FPSTATE_SIZE]);
        put16(&mut fpstate[..], 0, 0x37f);
        put32(&mut fpstate[..], 24, 0x1f80);
        let mut s = Self {
            host,
            segs,
            cpl: 0,
            vmcb_efer: 0,
            vmcb_cr0: 0,
            vmcb_cr3: 0,
            vmcb_cr4: 0,
            vmcb_dr7: DR7_FIXED_1,
            rflags: 0x2,
            star: 0,
            lstar: 0,
            cstar: 0,
            sfmask: 0,
            kernel_gs_base: 0,
            sysenter_cs: 0,
            sysenter_esp: 0,
            sysenter_eip: 0,
            g_pat: PAT_RESET,
            dbgctl: 0,
            vmcb_spec_ctrl: 0,
            regs: [0; 16],
            rip: 0xfff0,
            cr0: 0,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            efer: 0,
            xcr0: XFEATURE_FP,
            xss: 0,
            pkru: 0,
            dr6: DR6_RESET,
            dr7: DR7_FIXED_1,
            guest_debug: false,
            cpuid_1_eax,
            fpstate,
        };
        s.regs[R_RDX] = u64::from(cpuid_1_eax.unwrap_or(0x600));
        s.svm_set_efer(0);
        s.svm_set_cr0(CR0_ET | CR0_NW | CR0_CD);
        s.svm_set_cr4(0);
        s
    }

    /// KVM_SET_CPUID2: only CPUID.1.EAX matters here, and only for a later reset (the caller
    /// re-runs [`VcpuState::reset`] with it on INIT/reset). KVM_SET_CPUID2 itself does not
    /// change RDX; that is why QEMU writes the signature to RDX with KVM_SET_REGS.
    pub fn set_cpuid(&mut self, cpuid_1_eax: Option<u32>) {
        self.cpuid_1_eax = cpuid_1_eax;
    }

    /// CPUID.1.EAX last given to [`VcpuState::set_cpuid`].
    pub fn cpuid_1_eax(&self) -> Option<u32> {
        self.cpuid_1_eax
    }

    /// KVM_SET_REGS (`__set_regs`): GPRs and RIP into `vcpu->arch.regs`, RFLAGS through
    /// `svm_set_rflags` into the VMCB, unchanged (KVM does not force bit 1).
    pub fn set_regs(&mut self, r: &kvm_regs) {
        self.regs = [
            r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11,
            r.r12, r.r13, r.r14, r.r15,
        ];
        self.rip = r.rip;
        self.rflags = r.rflags;
    }

    /// KVM_SET_SREGS (`__set_sregs` / `__set_sregs_common`). Errors are KVM's -EINVAL for the
    /// `kvm_is_valid_sregs` checks modelled here. CR2 goes to `vcpu->arch.cr2` only (it reaches
    /// the VMCB at the first VMRUN, so never the VMSA); CR3 reaches the VMCB through
    /// `sev_post_set_cr3` for SEV-ES guests. CR8, APIC base and the interrupt bitmap are not
    /// part of the VMSA and are ignored.
    pub fn set_sregs(&mut self, s: &kvm_sregs) -> Result<(), i32> {
        self.set_sregs_common(&SregsView {
            segs: [s.cs, s.ds, s.es, s.fs, s.gs, s.ss, s.tr, s.ldt],
            gdt: s.gdt,
            idt: s.idt,
            cr0: s.cr0,
            cr2: s.cr2,
            cr3: s.cr3,
            cr4: s.cr4,
            efer: s.efer,
        })
    }

    /// KVM_SET_SREGS2: as [`VcpuState::set_sregs`], plus the flags check
    /// (`KVM_SREGS2_FLAGS_PDPTRS_VALID` only, and only with PAE paging). PDPTRs are not in the
    /// VMSA.
    pub fn set_sregs2(&mut self, s: &kvm_sregs2) -> Result<(), i32> {
        if s.flags & !KVM_SREGS2_FLAGS_PDPTRS_VALID != 0 {
            return Err(-libc::EINVAL);
        }
        let pae = s.cr0 & CR0_PG != 0 && s.cr4 & CR4_PAE != 0 && s.efer & EFER_LMA == 0;
        if s.flags & KVM_SREGS2_FLAGS_PDPTRS_VALID != 0 && !pae {
            return Err(-libc::EINVAL);
        }
        self.set_sregs_common(&SregsView {
            segs: [s.cs, s.ds, s.es, s.fs, s.gs, s.ss, s.tr, s.ldt],
            gdt: s.gdt,
            idt: s.idt,
            cr0: s.cr0,
            cr2: s.cr2,
            cr3: s.cr3,
            cr4: s.cr4,
            efer: s.efer,
        })
    }

    fn set_sregs_common(&mut self, s: &SregsView) -> Result<(), i32> {
        // kvm_is_valid_sregs (subset: no MAXPHYADDR check on CR3, no CPUID-dependent CR4 bits).
        if s.efer & EFER_LME != 0 && s.cr0 & CR0_PG != 0 {
            if s.cr4 & CR4_PAE == 0 || s.efer & EFER_LMA == 0 {
                return Err(-libc::EINVAL);
            }
        } else if s.efer & EFER_LMA != 0 || s.segs[0].l != 0 {
            return Err(-libc::EINVAL);
        }
        // kvm_is_valid_cr0 / kvm_is_valid_cr4 (architectural part).
        if s.cr0 >> 32 != 0
            || (s.cr0 & CR0_NW != 0 && s.cr0 & CR0_CD == 0)
            || (s.cr0 & CR0_PG != 0 && s.cr0 & CR0_PE == 0)
            || s.cr4 & CR4_VMXE != 0
        {
            return Err(-libc::EINVAL);
        }
        self.segs[SEG_IDTR].limit = u32::from(s.idt.limit);
        self.segs[SEG_IDTR].base = s.idt.base;
        self.segs[SEG_GDTR].limit = u32::from(s.gdt.limit);
        self.segs[SEG_GDTR].base = s.gdt.base;
        self.cr2 = s.cr2;
        self.cr3 = s.cr3;
        self.vmcb_cr3 = s.cr3; // sev_post_set_cr3
        self.svm_set_efer(s.efer);
        self.svm_set_cr0(s.cr0);
        self.svm_set_cr4(s.cr4);
        // cs, ds, es, fs, gs, ss, tr, ldt: kvm_set_segment -> svm_set_segment.
        let dest = [
            SEG_CS, SEG_DS, SEG_ES, SEG_FS, SEG_GS, SEG_SS, SEG_TR, SEG_LDTR,
        ];
        for (seg, idx) in s.segs.iter().zip(dest) {
            self.segs[idx] = VmcbSeg::from_kvm(seg);
            if idx == SEG_SS {
                self.cpl = seg.dpl & 3;
            }
        }
        Ok(())
    }

    /// `svm_set_efer`: the VMCB always has SVME.
    fn svm_set_efer(&mut self, efer: u64) {
        self.efer = efer;
        self.vmcb_efer = efer | EFER_SVME;
    }

    /// `svm_set_cr0` with NPT on (SEV requires it): LMA follows PG when LME is set, CD/NW are
    /// cleared in the VMCB copy (KVM_X86_QUIRK_CD_NW_CLEARED, not disabled by QEMU).
    fn svm_set_cr0(&mut self, cr0: u64) {
        if self.efer & EFER_LME != 0 {
            let paging = self.cr0 & CR0_PG != 0;
            if !paging && cr0 & CR0_PG != 0 {
                self.efer |= EFER_LMA;
                self.vmcb_efer |= EFER_LMA | EFER_LME;
            }
            if paging && cr0 & CR0_PG == 0 {
                self.efer &= !EFER_LMA;
                self.vmcb_efer &= !(EFER_LMA | EFER_LME);
            }
        }
        self.cr0 = cr0;
        self.vmcb_cr0 = cr0 & !(CR0_CD | CR0_NW);
    }

    /// `svm_set_cr4`: the host's CR4.MCE is ORed into the VMCB copy.
    fn svm_set_cr4(&mut self, cr4: u64) {
        self.cr4 = cr4;
        self.vmcb_cr4 = cr4 | if self.host.cr4_mce { CR4_MCE } else { 0 };
    }

    /// KVM_SET_FPU (`kvm_arch_vcpu_ioctl_set_fpu`): writes the FXSAVE part of the fpstate
    /// only. `ftwx` is the abridged (FXSAVE) tag byte and lands in `i387.twd` as is; the
    /// 16-byte `fpr` slots go to `st_space`. XSTATE_BV is untouched, so YMM is unchanged.
    pub fn set_fpu(&mut self, f: &kvm_fpu) {
        let fx = &mut self.fpstate[..];
        put16(fx, 0, f.fcw);
        put16(fx, 2, f.fsw);
        put16(fx, 4, u16::from(f.ftwx));
        put16(fx, 6, f.last_opcode);
        put64(fx, 8, f.last_ip);
        put64(fx, 16, f.last_dp);
        put32(fx, 24, f.mxcsr);
        for (i, r) in f.fpr.iter().enumerate() {
            fx[32 + 16 * i..48 + 16 * i].copy_from_slice(r);
        }
        for (i, r) in f.xmm.iter().enumerate() {
            fx[160 + 16 * i..176 + 16 * i].copy_from_slice(r);
        }
    }

    /// KVM_SET_XSAVE (`fpu_copy_uabi_to_guest_fpstate` -> `copy_uabi_to_xstate`), standard
    /// format, at least 4096 bytes. Only components whose XSTATE_BV bit is set are copied
    /// (FP = bytes 0-159 incl. MXCSR, SSE = XMM at 160, YMM at 576); if only SSE/YMM are set
    /// MXCSR/MXCSR_MASK still come in. Everything else keeps its previous bytes, which
    /// `sev_es_sync_vmsa()` reads regardless of XSTATE_BV. PKRU goes to `vcpu->arch.pkru`
    /// (0 if its bit is clear). Errors: -EINVAL for a short buffer, features beyond
    /// [`HostCpu::xfeatures`], non-zero XCOMP_BV/reserved header bytes, MXCSR reserved bits.
    pub fn set_xsave(&mut self, region: &[u8]) -> Result<(), i32> {
        if region.len() < FPSTATE_SIZE {
            return Err(-libc::EINVAL);
        }
        let xfeatures = get64(region, XSAVE_HDR);
        if xfeatures & !self.host.xfeatures != 0
            || region[XSAVE_HDR + 8..XSAVE_YMM].iter().any(|&b| b != 0)
        {
            return Err(-libc::EINVAL);
        }
        if xfeatures & (XFEATURE_FP | XFEATURE_SSE | XFEATURE_YMM) != 0 {
            // mxcsr_feature_mask is 0xffff on every CPU with SEV.
            if get32(region, 24) & !0xffff != 0 {
                return Err(-libc::EINVAL);
            }
            if xfeatures & XFEATURE_FP == 0 {
                self.fpstate[24..32].copy_from_slice(&region[24..32]);
            }
        }
        let fp = &mut self.fpstate[..];
        if xfeatures & XFEATURE_FP != 0 {
            fp[..160].copy_from_slice(&region[..160]);
        }
        if xfeatures & XFEATURE_SSE != 0 {
            fp[160..416].copy_from_slice(&region[160..416]);
        }
        if xfeatures & XFEATURE_YMM != 0 {
            fp[XSAVE_YMM..XSAVE_YMM + 256].copy_from_slice(&region[XSAVE_YMM..XSAVE_YMM + 256]);
        }
        put64(fp, XSAVE_HDR, xfeatures);
        let po = self.host.pkru_offset;
        self.pkru = if xfeatures & XFEATURE_PKRU != 0 && po + 4 <= region.len() {
            get32(region, po)
        } else {
            0
        };
        Ok(())
    }

    /// KVM_SET_XCRS (`kvm_vcpu_ioctl_x86_set_xcrs` -> `__kvm_set_xcr`). Only XCR0 is
    /// accepted; other indexes are skipped. -EINVAL for `flags`, `nr_xcrs > 16`, or an XCR0
    /// KVM refuses (no FP, YMM without SSE, bits outside [`HostCpu::xfeatures`], split MPX,
    /// partial AVX-512 or AMX).
    pub fn set_xcrs(&mut self, x: &kvm_xcrs) -> Result<(), i32> {
        if x.flags != 0 || x.nr_xcrs as usize > x.xcrs.len() {
            return Err(-libc::EINVAL);
        }
        for e in &x.xcrs[..x.nr_xcrs as usize] {
            if e.xcr == 0 {
                let v = e.value;
                let bad = v & XFEATURE_FP == 0
                    || (v & XFEATURE_YMM != 0 && v & XFEATURE_SSE == 0)
                    || v & !(self.host.xfeatures | XFEATURE_FP) != 0
                    || (v & XFEATURE_BNDREGS == 0) != (v & XFEATURE_BNDCSR == 0)
                    || (v & XFEATURE_AVX512 != 0
                        && (v & XFEATURE_YMM == 0 || v & XFEATURE_AVX512 != XFEATURE_AVX512))
                    || (v & XFEATURE_XTILE != 0 && v & XFEATURE_XTILE != XFEATURE_XTILE);
                if bad {
                    return Err(-libc::EINVAL);
                }
                self.xcr0 = v;
                break;
            }
        }
        Ok(())
    }

    /// KVM_SET_MSRS: returns how many entries were accepted (KVM stops at the first failure).
    /// VMSA-relevant MSRs land as `svm_set_msr` puts them: STAR/LSTAR/CSTAR/SFMASK/
    /// KERNEL_GS_BASE in the VMCB; SYSENTER_CS as is, SYSENTER_ESP/EIP truncated to 32 bits
    /// (the high halves are kept elsewhere for Intel-vendor guests); PAT (validated with
    /// `kvm_pat_valid`) in G_PAT; DEBUGCTL in the VMCB; SPEC_CTRL in the VMCB only with
    /// V_SPEC_CTRL; XSS (bits beyond [`HostCpu::supported_xss`] fail) and EFER (as
    /// KVM_SET_SREGS would) in `vcpu->arch`. Every other MSR is accepted without effect:
    /// its validity is not modelled.
    pub fn set_msrs(&mut self, e: &[kvm_msr_entry]) -> usize {
        for (n, m) in e.iter().enumerate() {
            if !self.set_msr(m.index, m.data) {
                return n;
            }
        }
        e.len()
    }

    fn set_msr(&mut self, index: u32, data: u64) -> bool {
        match index {
            0xc000_0081 => self.star = data,
            0xc000_0082 => self.lstar = data,
            0xc000_0083 => self.cstar = data,
            0xc000_0084 => self.sfmask = data,
            0xc000_0102 => self.kernel_gs_base = data,
            0x174 => self.sysenter_cs = data,
            0x175 => self.sysenter_esp = data & 0xffff_ffff,
            0x176 => self.sysenter_eip = data & 0xffff_ffff,
            0x277 => {
                // kvm_pat_valid: each byte a valid memory type (0, 1, 4, 5, 6, 7).
                if (0..8).any(|i| matches!((data >> (8 * i)) & 0xff, 2 | 3 | 8..)) {
                    return false;
                }
                self.g_pat = data;
            }
            0x1d9 => {
                if data & !0x3f != 0 {
                    return false;
                }
                self.dbgctl = data;
            }
            // Without V_SPEC_CTRL the value lives in svm->spec_ctrl, outside the VMSA.
            0x48 if self.host.v_spec_ctrl => self.vmcb_spec_ctrl = data,
            0xda0 => {
                if data & !self.host.supported_xss != 0 {
                    return false;
                }
                self.xss = data;
            }
            0xc000_0080 => {
                if data & !(1 | EFER_LME | EFER_LMA | (1 << 11) | EFER_SVME | (1 << 14) | (1 << 15))
                    != 0
                {
                    return false;
                }
                self.svm_set_efer(data);
            }
            _ => {}
        }
        true
    }

    /// KVM_SET_DEBUGREGS: DR0-3 are not in the VMSA; DR6 to `vcpu->arch.dr6`; DR7 to
    /// `vcpu->arch.dr7` and (`kvm_update_dr7`, guest debugging off) to the VMCB. -EINVAL for
    /// non-zero `flags` or bits above 31 in DR6/DR7.
    pub fn set_debugregs(&mut self, d: &kvm_debugregs) -> Result<(), i32> {
        if d.flags != 0 || d.dr6 >> 32 != 0 || d.dr7 >> 32 != 0 {
            return Err(-libc::EINVAL);
        }
        self.dr6 = d.dr6;
        self.dr7 = d.dr7;
        if !self.guest_debug {
            self.vmcb_dr7 = d.dr7;
        }
        Ok(())
    }

    /// KVM_SET_GUEST_DEBUG with `control & KVM_GUESTDBG_ENABLE`: any enabled guest debugging
    /// makes the sync fail. Disabling it restores the VMCB DR7 from `vcpu->arch.dr7`.
    pub fn set_guest_debug(&mut self, enabled: bool) {
        self.guest_debug = enabled;
        if !enabled {
            self.vmcb_dr7 = self.dr7;
        }
    }

    /// KVM_SET_GUEST_DEBUG as the ioctl's `control` word.
    pub fn set_guest_debug_control(&mut self, control: u32) {
        self.set_guest_debug(control & KVM_GUESTDBG_ENABLE != 0);
    }

    /// CR2 and CR3 as `vcpu->arch` has them (CR2 reaches the VMCB only at the first VMRUN).
    pub fn arch_cr2_cr3(&self) -> (u64, u64) {
        (self.cr2, self.cr3)
    }
}

struct SregsView {
    /// cs, ds, es, fs, gs, ss, tr, ldt (kvm_sregs order).
    segs: [kvm_segment; 8],
    gdt: kvm_dtable,
    idt: kvm_dtable,
    cr0: u64,
    cr2: u64,
    cr3: u64,
    cr4: u64,
    efer: u64,
}

/// `sev_es_sync_vmsa()`: the VMSA page for `state`. `sev_features` is what the kernel writes
/// at 0x3B0 (see the module doc per version). Err(-EINVAL) where the kernel refuses:
/// guest debugging enabled, or VMCB DR7 with bits other than DR7_FIXED_1.
pub fn sync_vmsa(
    state: &VcpuState,
    sev_features: u64,
    variant: SyncVariant,
) -> Result<Box<[u8; VMSA_SIZE]>, i32> {
    let s = state;
    if s.guest_debug || s.vmcb_dr7 & !DR7_FIXED_1 != 0 {
        return Err(-libc::EINVAL);
    }
    let mut page = Box::new([0u8; VMSA_SIZE]);
    let p = &mut page[..];
    // memcpy(save, &svm->vmcb->save, sizeof(svm->vmcb->save)): the VMCB image.
    let seg_off = [
        off::ES,
        off::CS,
        off::SS,
        off::DS,
        off::FS,
        off::GS,
        off::GDTR,
        off::LDTR,
        off::IDTR,
        off::TR,
    ];
    for (seg, at) in s.segs.iter().zip(seg_off) {
        seg.write(p, at);
    }
    p[off::CPL] = s.cpl;
    put64(p, off::EFER, s.vmcb_efer);
    put64(p, off::CR4, s.vmcb_cr4);
    put64(p, off::CR3, s.vmcb_cr3);
    put64(p, off::CR0, s.vmcb_cr0);
    put64(p, off::DR7, s.vmcb_dr7);
    put64(p, off::RFLAGS, s.rflags);
    put64(p, off::STAR, s.star);
    put64(p, off::LSTAR, s.lstar);
    put64(p, off::CSTAR, s.cstar);
    put64(p, off::SFMASK, s.sfmask);
    put64(p, off::KERNEL_GS_BASE, s.kernel_gs_base);
    put64(p, off::SYSENTER_CS, s.sysenter_cs);
    put64(p, off::SYSENTER_ESP, s.sysenter_esp);
    put64(p, off::SYSENTER_EIP, s.sysenter_eip);
    // vmcb->save.cr2 is loaded from vcpu->arch.cr2 only at VMRUN: still 0 here.
    put64(p, off::CR2, 0);
    put64(p, off::G_PAT, s.g_pat);
    put64(p, off::DBGCTL, s.dbgctl);
    put64(p, off::SPEC_CTRL, s.vmcb_spec_ctrl);
    // Registers from vcpu->arch.
    put64(p, off::RAX, s.regs[R_RAX]);
    put64(p, off::RBX, s.regs[R_RBX]);
    put64(p, off::RCX, s.regs[R_RCX]);
    put64(p, off::RDX, s.regs[R_RDX]);
    put64(p, off::RSP, s.regs[R_RSP]);
    put64(p, off::RBP, s.regs[R_RBP]);
    put64(p, off::RSI, s.regs[R_RSI]);
    put64(p, off::RDI, s.regs[R_RDI]);
    for i in 0..8 {
        put64(p, off::R8 + 8 * i, s.regs[8 + i]);
    }
    put64(p, off::RIP, s.rip);
    put64(p, off::XCR0, s.xcr0);
    put32(p, off::PKRU, s.pkru);
    put64(p, off::XSS, s.xss);
    put64(p, off::DR6, s.dr6);
    put64(p, off::SEV_FEATURES, sev_features);
    if variant.sync_fpu {
        let x = &s.fpstate[..];
        put64(p, off::X87_DP, get64(x, 16));
        put32(p, off::MXCSR, get32(x, 24));
        put16(p, off::X87_FTW, get16(x, 4));
        put16(p, off::X87_FSW, get16(x, 2));
        put16(p, off::X87_FCW, get16(x, 0));
        put16(p, off::X87_FOP, get16(x, 6));
        put16(p, off::X87_DS, 0);
        put16(p, off::X87_CS, 0);
        put64(p, off::X87_RIP, get64(x, 8));
        // fpreg_x87: bytes 0-7 of each register, then bytes 8-9 of each.
        for i in 0..8 {
            let st = &x[32 + 16 * i..48 + 16 * i];
            p[off::FPREG_X87 + 8 * i..off::FPREG_X87 + 8 * i + 8].copy_from_slice(&st[..8]);
            p[off::FPREG_X87 + 64 + 2 * i] = st[8];
            p[off::FPREG_X87 + 64 + 2 * i + 1] = st[9];
        }
        p[off::FPREG_XMM..off::FPREG_XMM + 256].copy_from_slice(&x[160..416]);
        // get_xsave_addr(xsave, XFEATURE_YMM) is NULL while YMM is in its init state.
        if get64(x, XSAVE_HDR) & XFEATURE_YMM != 0 {
            p[off::FPREG_YMM..off::FPREG_YMM + 256].copy_from_slice(&x[XSAVE_YMM..XSAVE_YMM + 256]);
        }
    }
    Ok(page)
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn get32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn get64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmsa_reset_page_matches_kernel_values() {
        let s = VcpuState::reset(HostCpu::default(), None);
        let p = sync_vmsa(&s, 0, SyncVariant::LEGACY).expect("sync");
        assert_eq!(get16(&p[..], off::CS), 0xf000);
        assert_eq!(get16(&p[..], off::CS + 2), 0x9a);
        assert_eq!(get64(&p[..], off::CR0), 0x10);
        assert_eq!(get64(&p[..], off::CR4), 0x40);
        assert_eq!(get64(&p[..], off::EFER), 0x1000);
        assert_eq!(get64(&p[..], off::RDX), 0x600);
        assert_eq!(get64(&p[..], off::DR6), DR6_RESET);
        assert_eq!(get64(&p[..], off::XCR0), 1);
        assert!(p[0x400..].iter().all(|&b| b == 0));
        let p = sync_vmsa(&s, 0, SyncVariant::INIT2).expect("sync");
        assert_eq!(get16(&p[..], off::X87_FCW), 0x37f);
        assert_eq!(get32(&p[..], off::MXCSR), 0x1f80);
    }

    #[test]
    fn vmsa_segment_attrib_packing() {
        let seg = kvm_segment {
            base: 1,
            limit: 0xffff_ffff,
            selector: 8,
            type_: 0xb,
            present: 1,
            dpl: 3,
            db: 0,
            s: 1,
            l: 1,
            g: 1,
            avl: 1,
            unusable: 0,
            padding: 0,
        };
        assert_eq!(
            VmcbSeg::from_kvm(&seg).attrib,
            0xb | 0x10 | 0x60 | 0x80 | 0x100 | 0x200 | 0x800
        );
        let unusable = kvm_segment { unusable: 1, ..seg };
        assert_eq!(VmcbSeg::from_kvm(&unusable).attrib & 0x80, 0);
    }

    #[test]
    fn vmsa_refuses_debug() {
        let mut s = VcpuState::reset(HostCpu::default(), None);
        s.set_guest_debug(true);
        assert_eq!(
            sync_vmsa(&s, 0, SyncVariant::INIT2).err(),
            Some(-libc::EINVAL)
        );
        s.set_guest_debug(false);
        let d = kvm_debugregs {
            dr6: DR6_RESET,
            dr7: 0x401,
            ..Default::default()
        };
        s.set_debugregs(&d).expect("debugregs");
        assert_eq!(
            sync_vmsa(&s, 0, SyncVariant::INIT2).err(),
            Some(-libc::EINVAL)
        );
    }

    #[test]
    fn vmsa_fpu_st_and_ymm() {
        let mut s = VcpuState::reset(HostCpu::default(), None);
        let mut f = kvm_fpu {
            fcw: 0x37f,
            ftwx: 0x80,
            mxcsr: 0x1f80,
            ..Default::default()
        };
        f.fpr[7] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0xaa, 0xbb, 0, 0, 0, 0];
        s.set_fpu(&f);
        let p = sync_vmsa(&s, 0, SyncVariant::INIT2).expect("sync");
        assert_eq!(
            &p[off::FPREG_X87 + 56..off::FPREG_X87 + 64],
            &[1, 2, 3, 4, 5, 6, 7, 8]
        );
        assert_eq!(&p[off::FPREG_X87 + 78..off::FPREG_X87 + 80], &[9, 10]);
        assert_eq!(get16(&p[..], off::X87_FTW), 0x80);
        let mut x = vec![0u8; 4096];
        put64(&mut x, XSAVE_HDR, XFEATURE_YMM);
        put32(&mut x, 24, 0x1f80);
        x[XSAVE_YMM] = 0x5a;
        s.set_xsave(&x).expect("xsave");
        let p = sync_vmsa(&s, 0, SyncVariant::INIT2).expect("sync");
        assert_eq!(p[off::FPREG_YMM], 0x5a);
        // FP not in XSTATE_BV: the x87 bytes set by KVM_SET_FPU are still there.
        assert_eq!(get16(&p[..], off::X87_FTW), 0x80);
    }
}
