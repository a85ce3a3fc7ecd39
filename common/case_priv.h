/* case_priv.h - helpers shared by case.c and case_gen.c only (not a public interface). */
#ifndef MSA_CASE_PRIV_H
#define MSA_CASE_PRIV_H

/* 1/sqrt(n) rounded once to the nearest double: the value of a default scale. */
double msa_case_rsqrt_nearest(int n);

#endif
