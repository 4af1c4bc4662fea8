#!/usr/bin/env python3
"""Finds Williamson matrices of prime order n whose first rows are +1 at 0 and constant on
the cyclotomic classes of order e of GF(n) (class i = g^i·<g^e>, g the least primitive root),
the table src/kernels/hadamard.cpp builds its order-4n Hadamard matrix from. Needs -1 in
<g^e> (e divides (n - 1) / 2) so the circulants are symmetric.

The periodic autocorrelations of such rows are constant on the classes too, so the condition
PAF_A(s) + PAF_B(s) + PAF_C(s) + PAF_D(s) = 0 for s != 0 is e equations; pairs (A, B) are
matched against pairs (C, D) through a dictionary (2^(2e) pairs each side).

Usage: find_williamson.py [N] [E]   (default 43 7: prints the class bitmasks of A, B, C, D)
"""
import itertools
import sys


def least_primitive_root(n):
    for g in range(2, n):
        if len({pow(g, k, n) for k in range(1, n)}) == n - 1:
            return g
    raise SystemExit(f"{n} has no primitive root")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 43
    e = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    if ((n - 1) // 2) % e:
        raise SystemExit(f"-1 is not in the subgroup of index {e} of GF({n})*: the rows would not be symmetric")
    g = least_primitive_root(n)
    class_of = {pow(g, k, n): k % e for k in range(n - 1)}
    representatives = [pow(g, i, n) for i in range(e)]

    def first_row(mask):
        return [1] + [-1 if mask >> class_of[t] & 1 else 1 for t in range(1, n)]

    def paf(row):
        return tuple(sum(row[t] * row[(t + s) % n] for t in range(n)) for s in representatives)

    pafs = {mask: paf(first_row(mask)) for mask in range(1 << e)}
    sums = {}
    for a, b in itertools.combinations_with_replacement(range(1 << e), 2):
        sums.setdefault(tuple(x + y for x, y in zip(pafs[a], pafs[b])), (a, b))
    for key, (a, b) in sums.items():
        other = sums.get(tuple(-x for x in key))
        if other:
            print(f"n={n} e={e} g={g}: negative classes A, B, C, D = " +
                  ", ".join(f"0b{mask:0{e}b}" for mask in (a, b) + other))
            return
    raise SystemExit(f"no Williamson matrices of order {n} from classes of order {e}")


if __name__ == "__main__":
    main()
