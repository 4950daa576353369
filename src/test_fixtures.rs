//! Probe results of simulated hosts, shared by the unit tests of `negotiate` (src/negotiate.rs)
//! and of the `memenc` binary (src/bin/memenc.rs), which each include this file as
//! `mod fixtures` and take the probe types from there (`crate::probe` in the library,
//! `memenc::probe` in the binary). Not every includer uses every fixture.
#![allow(dead_code)]

use super::*;

/// What the probe of a simulated sev@6.1 host reported (the model's answers, taken once).
pub(super) fn old_sev_kernel() -> mem_enc_caps {
    let mut c = mem_enc_caps {
        size: size_of::<mem_enc_caps>() as u32,
        vendor: 1,
        api_version: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0xc,
        },
        vm_types: mem_enc_cap {
            status: 3,
            err: 0,
            value: 0x0,
        },
        sev_vmsa_features: mem_enc_cap {
            status: 3,
            err: -6,
            value: 0x0,
        },
        snp_policy_bits: mem_enc_cap {
            status: 3,
            err: -6,
            value: 0x0,
        },
        snp_req_certs: mem_enc_cap {
            status: 3,
            err: -6,
            value: 0x0,
        },
        sev_null_probe: mem_enc_cap {
            status: 1,
            err: -14,
            value: 0x1,
        },
        tdx_supported_attrs: mem_enc_cap {
            status: 2,
            err: 0,
            value: 0x0,
        },
        tdx_supported_xfam: mem_enc_cap {
            status: 2,
            err: 0,
            value: 0x0,
        },
        tdx_cpuid_configs: mem_enc_cap {
            status: 2,
            err: 0,
            value: 0x0,
        },
        guest_memfd: mem_enc_cap {
            status: 3,
            err: 0,
            value: 0x0,
        },
        memory_attributes: mem_enc_cap {
            status: 3,
            err: 0,
            value: 0x0,
        },
        ..Default::default()
    };
    c.summarize();
    c
}

/// What the probe of a simulated snp@6.11 host reported (the model's answers, taken once).
pub(super) fn snp_host_without_policy_attr() -> mem_enc_caps {
    let mut c = mem_enc_caps {
        size: size_of::<mem_enc_caps>() as u32,
        vendor: 1,
        api_version: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0xc,
        },
        vm_types: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0x1d,
        },
        sev_vmsa_features: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0x20,
        },
        snp_policy_bits: mem_enc_cap {
            status: 4,
            err: -6,
            value: 0x1bffff,
        },
        snp_req_certs: mem_enc_cap {
            status: 3,
            err: -6,
            value: 0x0,
        },
        sev_null_probe: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0x1,
        },
        tdx_supported_attrs: mem_enc_cap {
            status: 2,
            err: 0,
            value: 0x0,
        },
        tdx_supported_xfam: mem_enc_cap {
            status: 2,
            err: 0,
            value: 0x0,
        },
        tdx_cpuid_configs: mem_enc_cap {
            status: 2,
            err: 0,
            value: 0x0,
        },
        guest_memfd: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0x1,
        },
        memory_attributes: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0x8,
        },
        ..Default::default()
    };
    c.summarize();
    c
}

/// What the probe of a simulated snp@6.18 host reported (the model's answers, taken once).
pub(super) fn snp_618_probe() -> mem_enc_caps {
    let mut c = mem_enc_caps {
        size: size_of::<mem_enc_caps>() as u32,
        vendor: 1,
        api_version: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0xc,
        },
        vm_types: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0x1d,
        },
        sev_vmsa_features: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0x220,
        },
        snp_policy_bits: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0x3fbffff,
        },
        snp_req_certs: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0x1,
        },
        sev_null_probe: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0x1,
        },
        tdx_supported_attrs: mem_enc_cap {
            status: 2,
            err: 0,
            value: 0x0,
        },
        tdx_supported_xfam: mem_enc_cap {
            status: 2,
            err: 0,
            value: 0x0,
        },
        tdx_cpuid_configs: mem_enc_cap {
            status: 2,
            err: 0,
            value: 0x0,
        },
        guest_memfd: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0x1,
        },
        memory_attributes: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0x8,
        },
        ..Default::default()
    };
    c.summarize();
    c
}

/// What the probe of a simulated tdx@6.19 host reported (the model's answers, taken once).
pub(super) fn tdx_host() -> mem_enc_caps {
    let mut c = mem_enc_caps {
        size: size_of::<mem_enc_caps>() as u32,
        vendor: 2,
        api_version: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0xc,
        },
        vm_types: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0x21,
        },
        sev_vmsa_features: mem_enc_cap {
            status: 2,
            err: 0,
            value: 0x0,
        },
        snp_policy_bits: mem_enc_cap {
            status: 2,
            err: 0,
            value: 0x0,
        },
        snp_req_certs: mem_enc_cap {
            status: 2,
            err: 0,
            value: 0x0,
        },
        sev_null_probe: mem_enc_cap {
            status: 2,
            err: 0,
            value: 0x0,
        },
        tdx_supported_attrs: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0x10000000,
        },
        tdx_supported_xfam: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0x61be7,
        },
        tdx_cpuid_configs: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0x5,
        },
        guest_memfd: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0x1,
        },
        memory_attributes: mem_enc_cap {
            status: 1,
            err: 0,
            value: 0x8,
        },
        ..Default::default()
    };
    c.summarize();
    c
}
