import { describe, expect, it } from "vitest";
import { agreesTop1, comparePositions, klExact, klLowerBound, perplexity, summarise, type TokenScore } from "../../src/eval/metrics.js";

const ln = Math.log;

/** A scored position whose top list is `probabilities` (id -> p, best first) and whose fed token is `fed`. */
function scored(fed: number, probabilities: [number, number][], fedProbability = probabilities.find(([id]) => id === fed)![1]): TokenScore {
  return { tokenId: fed, logprob: ln(fedProbability), top: probabilities.map(([tokenId, p]) => ({ tokenId, logprob: ln(p) })) };
}

describe("eval metrics", () => {
  it("perplexity is exp of the mean negative log-probability", () => {
    // (ln 2 + ln 4) / 2 = ln sqrt(8)
    expect(perplexity([ln(1 / 2), ln(1 / 4)])).toBeCloseTo(Math.sqrt(8), 12);
    expect(perplexity([0, 0, 0])).toBe(1);
    expect(() => perplexity([])).toThrow();
  });

  it("KL over the listed tokens and one tail bucket, by hand", () => {
    // full: a .5, b .3, tail .2; evicted: a .25, b .5, tail .25
    const full = scored(0, [[0, 0.5], [1, 0.3]]);
    const evicted = scored(0, [[1, 0.5], [0, 0.25]]);
    const expected = 0.5 * ln(0.5 / 0.25) + 0.3 * ln(0.3 / 0.5) + 0.2 * ln(0.2 / 0.25);
    expect(expected).toBeCloseTo(0.148697, 6);
    expect(klLowerBound(full, evicted)).toBeCloseTo(expected, 12);
    expect(klLowerBound(full, full)).toBeCloseTo(0, 12);
  });

  it("uses the fed token on both sides even outside the top lists, and never exceeds the true KL", () => {
    // Whole distributions over 5 tokens; the API shows the top 2 and the fed token (4).
    const p = [0.4, 0.3, 0.15, 0.1, 0.05];
    const q = [0.2, 0.35, 0.25, 0.1, 0.1];
    const trueKl = p.reduce((sum, pi, i) => sum + pi * ln(pi / q[i]), 0);
    const full = scored(4, [[0, 0.4], [1, 0.3]], 0.05);
    const evicted = scored(4, [[1, 0.35], [2, 0.25]], 0.1);
    // Known on both sides: token 1 (both lists) and token 4 (fed); the rest is one bucket.
    const known = 0.3 * ln(0.3 / 0.35) + 0.05 * ln(0.05 / 0.1);
    const tail = (1 - 0.35) * ln((1 - 0.35) / (1 - 0.45));
    expect(klLowerBound(full, evicted)).toBeCloseTo(known + tail, 12);
    expect(klLowerBound(full, evicted)).toBeLessThanOrEqual(trueKl);
  });

  it("exact KL over whole distributions, used when both sides carry them", () => {
    const p = [0.4, 0.3, 0.15, 0.1, 0.05];
    const q = [0.2, 0.35, 0.25, 0.1, 0.1];
    const trueKl = p.reduce((sum, pi, i) => sum + pi * ln(pi / q[i]), 0);
    expect(klExact(p.map(ln), q.map(ln))).toBeCloseTo(trueKl, 12);
    expect(klExact(p.map(ln), p.map(ln))).toBe(0);
    const whole = (fed: number, dist: number[]): TokenScore => ({ ...scored(fed, [[0, dist[0]], [1, dist[1]]], dist[fed]), distribution: dist.map(ln) });
    const [compared] = comparePositions([whole(4, p)], [whole(4, q)]);
    expect(compared).toMatchObject({ klExact: true });
    expect(compared.kl).toBeCloseTo(trueKl, 12);
    // One side without its distribution: the top-list lower bound, marked as such.
    const [bounded] = comparePositions([whole(4, p)], [scored(4, [[1, 0.35], [2, 0.25]], 0.1)]);
    expect(bounded.klExact).toBe(false);
    expect(bounded.kl).toBeLessThan(trueKl);
    expect(summarise([compared, bounded]).klExact).toBe(false);
    expect(summarise([compared]).klExact).toBe(true);
  });

  it("top-1 agreement, pooled perplexities and their change", () => {
    const full = [scored(0, [[0, 0.5], [1, 0.25]]), scored(1, [[1, 0.5], [0, 0.25]]), scored(2, [[2, 0.8], [0, 0.1]])];
    const evicted = [scored(0, [[0, 0.5], [1, 0.25]]), scored(1, [[0, 0.5], [1, 0.25]]), scored(2, [[2, 0.4], [0, 0.3]])];
    expect(full.map((f, i) => agreesTop1(f, evicted[i]))).toEqual([true, false, true]);
    const summary = summarise(comparePositions(full, evicted));
    expect(summary.tokens).toBe(3);
    expect(summary.top1Agreement).toBeCloseTo(2 / 3, 12);
    expect(summary.perplexityFull).toBeCloseTo(Math.exp(-(ln(0.5) + ln(0.5) + ln(0.8)) / 3), 12);
    expect(summary.perplexityEvicted).toBeCloseTo(Math.exp(-(ln(0.5) + ln(0.25) + ln(0.4)) / 3), 12);
    // ratio of perplexities = exp of the mean log-likelihood difference: (ln 2 + ln 2) / 3
    expect(summary.perplexityChangePct).toBeCloseTo((Math.exp((2 * ln(2)) / 3) - 1) * 100, 10);
    expect(summary.meanFullTopMass).toBeCloseTo((0.75 + 0.75 + 0.9) / 3, 12);
    expect(summary.meanKl).toBeGreaterThan(0);
  });

  it("refuses score lists that do not cover the same tokens", () => {
    expect(() => comparePositions([scored(0, [[0, 1]])], [scored(1, [[1, 1]])])).toThrow(/same tokens/);
    expect(() => comparePositions([scored(0, [[0, 1]])], [])).toThrow(/same tokens/);
  });
});
