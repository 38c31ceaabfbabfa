/**
 * PyramidKV's budget, window included, for a head of `entries` entries in
 * layer `layer` of `layers` whose average budget is `budget` (PyramidKV's
 * integer schedule, Cai et al. 2024: the selected entries fall linearly from the bottom layer
 * to the top, averaging budget - window):
 *   entries <= budget          -> everything (no eviction)
 *   entries < 2(budget-window) -> budget (uniform SnapKV)
 *   otherwise                  -> cap_l + window, cap_l = max - l * floor((max - min) / (layers - 1))
 * A one-layer model has no slope to follow and gets the uniform budget (no division by zero).
 */
export function pyramidBudget(entries: number, budget: number, window: number, beta: number, layer: number, layers: number): number {
  if (entries <= budget) return entries;
  const selected = budget - window;
  if (entries < 2 * selected || layers === 1) return budget;
  let minimum = Math.floor(selected / beta);
  let maximum = 2 * selected - minimum;
  if (maximum >= entries - window) {
    maximum = entries - window;
    minimum = 2 * selected - maximum;
  }
  const step = Math.floor((maximum - minimum) / (layers - 1));
  return maximum - layer * step + window;
}
