import type { ParameterDoc } from "./policy.js";

/** Attention sinks: the first entries of each head, which every sink-keeping policy protects (S = 4). */
export const sinkTokensParameter: ParameterDoc = { name: "sinkTokens", description: "entries at the start always kept (attention sinks)", defaultValue: 4 };
