// Statistics for benchmarks whose rounds the host's noise moves more than the effect measured.

/**
 * Confidence interval of a median that assumes nothing of the distribution: the narrowest pair of
 * order statistics (x_k, x_{n+1-k}) that covers the true median with at least 95 % probability.
 * Their coverage is P(k <= B <= n-k) for B ~ Binomial(n, 1/2). Below 6 samples no pair reaches
 * 95 %: the full range comes back, with its lower level.
 */
export function medianCi(xs: number[]): { level: number; low: number; high: number } {
  const n = xs.length;
  const sorted = [...xs].sort((a, b) => a - b);
  if (n === 0) return { level: 0, low: NaN, high: NaN };
  // cdf[i] = P(B <= i)
  const cdf: number[] = [];
  let p = Math.pow(0.5, n);
  let acc = 0;
  for (let i = 0; i <= n; i++) {
    acc += p;
    cdf.push(acc);
    p = p * (n - i) / (i + 1);
  }
  let k = 1;
  while (k + 1 <= Math.floor((n + 1) / 2) && 1 - 2 * cdf[k] >= 0.95) k++;
  return { level: 1 - 2 * cdf[k - 1], low: sorted[k - 1], high: sorted[n - k] };
}

/**
 * A run's rate at its undisturbed moments: the 90th percentile (nearest rank below) of its
 * 100 ms window rates, leaving out the first two windows (the load generator connecting) and the
 * last (it stopping). On the shared VM the host's interference only ever slows a run, in dips and
 * steps that last 0.1 s to seconds, so this moves less between identical runs than the average.
 * NaN when the run was too short to have windows.
 */
export function windowRate(rates: number[]): number {
  const steady = rates.slice(2, -1).sort((a, b) => a - b);
  return steady.length === 0 ? NaN : steady[Math.floor(0.9 * (steady.length - 1))];
}
