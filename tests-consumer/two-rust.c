/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/* A C program linking two Rust staticlibs, libmemenc.a and another (other-rust.rs), as a VMM
 * with its own Rust code would when it links memenc statically. Both work, panics caught in
 * the other library's std included. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <memenc.h>

int other_rust_sum(int n);

int main(void)
{
    struct mem_enc_cmd cmd;
    memset(&cmd, 0, sizeof(cmd));
    int r = mem_enc_op(-1, &cmd);
    int sum = other_rust_sum(4);
    int caught = other_rust_sum(-1);
    printf("mem_enc_op(-1) = %d (%s); other library: sum 1..4 = %d, caught panic -> %d\n", r,
           mem_enc_strerror(r), sum, caught);
    return (r == -EBADF && sum == 10 && caught == -1) ? 0 : 1;
}
