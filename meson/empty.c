/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/* libmemenc.so is the Rust staticlib linked whole; meson needs one C source to pick the C linker. */
typedef int memenc_empty_translation_unit;
