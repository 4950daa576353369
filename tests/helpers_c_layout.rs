//! The C side of the layout asserts: compiles a small C11 program against include/memenc.h
//! (with -Wall -Wextra -Werror, and once as C++) whose _Static_asserts pin every typed-helper
//! and negotiation struct's size and field offsets, and which prints the sizes so they can be
//! compared with the Rust ones. Skips visibly when no C compiler is installed.

use std::path::Path;
use std::process::Command;

const C_SOURCE: &str = r#"
#include <stddef.h>
#include <stdio.h>
#include "memenc.h"

#define SIZE(t, n) _Static_assert(sizeof(struct t) == (n), #t " size")
#define OFF(t, f, n) _Static_assert(offsetof(struct t, f) == (n), #t "." #f " offset")

SIZE(mem_enc_sev_init2_args, MEM_ENC_SEV_INIT2_ARGS_SIZE_VER0);
OFF(mem_enc_sev_init2_args, ghcb_version, 8);
SIZE(mem_enc_sev_start_args, MEM_ENC_SEV_START_ARGS_SIZE_VER0);
OFF(mem_enc_sev_start_args, cert, 8);
OFF(mem_enc_sev_start_args, session_len, 32);
SIZE(mem_enc_sev_packet_args, MEM_ENC_SEV_PACKET_ARGS_SIZE_VER0);
OFF(mem_enc_sev_packet_args, guest, 16);
OFF(mem_enc_sev_packet_args, trans_len, 40);
SIZE(mem_enc_sev_send_start_args, MEM_ENC_SEV_SEND_START_ARGS_SIZE_VER0);
OFF(mem_enc_sev_send_start_args, amd_certs_len, 40);
SIZE(mem_enc_snp_launch_start_args, MEM_ENC_SNP_LAUNCH_START_ARGS_SIZE_VER0);
OFF(mem_enc_snp_launch_start_args, gosvw, 8);
SIZE(mem_enc_snp_launch_update_args, MEM_ENC_SNP_LAUNCH_UPDATE_ARGS_SIZE_VER0);
OFF(mem_enc_snp_launch_update_args, len, 16);
OFF(mem_enc_snp_launch_update_args, page_type, 24);
SIZE(mem_enc_snp_launch_finish_args, MEM_ENC_SNP_LAUNCH_FINISH_ARGS_SIZE_VER0);
OFF(mem_enc_snp_launch_finish_args, host_data, 32);
OFF(mem_enc_snp_launch_finish_args, auth_key_en, 64);
SIZE(mem_enc_tdx_capabilities, MEM_ENC_TDX_CAPABILITIES_SIZE_VER0);
SIZE(mem_enc_tdx_init_vm_args, MEM_ENC_TDX_INIT_VM_ARGS_SIZE_VER0);
OFF(mem_enc_tdx_init_vm_args, mrowner, 64);
OFF(mem_enc_tdx_init_vm_args, cpuid, 160);
SIZE(mem_enc_tdx_init_mem_region_args, MEM_ENC_TDX_INIT_MEM_REGION_ARGS_SIZE_VER0);
OFF(mem_enc_tdx_init_mem_region_args, flags, 24);
OFF(mem_enc_tdx_init_mem_region_args, retry_limit, 28);
OFF(mem_enc_snp_launch_update_args, retry_limit, 28);
SIZE(mem_enc_snp_req_certs, 24);
OFF(mem_enc_snp_req_certs, ret, 16);
SIZE(mem_enc_cpuid_entry, 40);
OFF(mem_enc_cpuid_entry, edx, 24);
SIZE(mem_enc_trace_event, 56);
OFF(mem_enc_trace_event, name, 16);
OFF(mem_enc_trace_event, status, 40);
SIZE(mem_enc_launch_request, MEM_ENC_LAUNCH_REQUEST_SIZE_VER1);
OFF(mem_enc_launch_request, sev_policy, MEM_ENC_LAUNCH_REQUEST_SIZE_VER0);
SIZE(mem_enc_launch_settings, MEM_ENC_LAUNCH_SETTINGS_SIZE_VER1);
OFF(mem_enc_launch_settings, ghcb_version, 16);
OFF(mem_enc_launch_settings, legacy, 20);
OFF(mem_enc_launch_settings, sev_policy, MEM_ENC_LAUNCH_SETTINGS_SIZE_VER0);

int main(void) {
    printf("%zu %zu %zu\n", sizeof(struct mem_enc_tdx_init_vm_args),
           sizeof(struct mem_enc_snp_launch_finish_args), sizeof(struct mem_enc_trace_event));
    return 0;
}
"#;

fn compile(compiler: &str, lang: &[&str], out: &Path, src: &Path, include: &Path) -> Option<bool> {
    let status = Command::new(compiler)
        .args(lang)
        .args(["-Wall", "-Wextra", "-Werror", "-I"])
        .arg(include)
        .arg(src)
        .arg("-o")
        .arg(out)
        .status()
        .ok()?;
    Some(status.success())
}

#[test]
fn c_and_cxx_see_the_same_layouts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("memenc-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("layout.c");
    std::fs::write(&src, C_SOURCE).unwrap();
    let bin = dir.join("layout");
    let include = root.join("include");
    let Some(ok) = compile("cc", &["-std=c11"], &bin, &src, &include) else {
        println!("SKIPPED: c_and_cxx_see_the_same_layouts: no C compiler (cc)");
        return;
    };
    assert!(
        ok,
        "include/memenc.h: layout asserts failed or warnings in C11"
    );
    let out = Command::new(&bin).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.trim(), "176 72 56");
    // The header is also valid C++ (cpp_compat); _Static_assert is spelled static_assert there.
    let cxx = dir.join("layout.cc");
    std::fs::write(&cxx, C_SOURCE.replace("_Static_assert", "static_assert")).unwrap();
    match compile(
        "c++",
        &["-std=c++17", "-x", "c++"],
        &dir.join("layout-cxx"),
        &cxx,
        &include,
    ) {
        Some(ok) => assert!(ok, "include/memenc.h as C++"),
        None => println!("SKIPPED: C++ part: no c++ compiler"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
