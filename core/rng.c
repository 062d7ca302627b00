/*
** core/rng.c: the seeded random stream every module draws from (datasets,
** training batches, tuned-lens shuffles, the truth's input sampling), so a
** seed means the same numbers wherever it is used.
*/
#include "core/core.h"

// SplitMix64 (Steele, Lea, Flood 2014): one add and three mixes per draw;
// every 64-bit state is valid, so a seed needs no conditioning.
uint64_t mech_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
