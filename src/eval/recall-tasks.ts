import { readFileSync } from "node:fs";

export const RECALL_TASKS = ["passkey", "multikey", "multiquery"] as const;
export type RecallTaskName = (typeof RECALL_TASKS)[number];

/** One needle task from the recall model's held-out set (tools/recall-model/corpus.py's JSONL records). */
export interface RecallTask {
  task: RecallTaskName;
  /** Prompt tokens, BOS included. */
  length: number;
  /** Where the (first) asked fact sits in the filler, 0..1. */
  depth: number;
  /** BOS and the prompt. */
  tokens: number[];
  /** Index in `tokens` where the question starts (what query-agnostic eviction does not see). */
  questionStart: number;
  /** Index in `tokens` just after the question's "?": the answer prefix ("the pass key is") follows. */
  questionEnd: number;
  /** The asked facts' sentences in the context, [start, end) indices in `tokens` (the needles). */
  needles: { start: number; end: number }[];
  /** The answer, without EOS. */
  answer: number[];
  /** Position in the held-out file, for the report. */
  index: number;
}

/** The token ids the task layout is read by: the question's first word, its "?", and the "." ending a fact. */
export interface RecallMarkers {
  /** " what", which filler and facts never use: the question starts at its last occurrence. */
  question: number;
  questionMark: number;
  period: number;
}

/** Reads the held-out set; a fact (a needle) runs from its recorded first token to the "." after it. */
export function loadRecallTasks(path: string, bosTokenId: number, markers: RecallMarkers): RecallTask[] {
  const lines = readFileSync(path, "utf8").split("\n").filter((line) => line.trim() !== "");
  return lines.map((line, index) => {
    const record = JSON.parse(line) as Record<string, unknown>;
    const field = <T>(name: string, check: (value: unknown) => boolean): T => {
      if (!check(record[name])) throw new Error(`${path}:${index + 1}: field ${name} is missing or malformed`);
      return record[name] as T;
    };
    const isIds = (value: unknown) => Array.isArray(value) && value.every((v) => Number.isInteger(v) && v >= 0);
    const task = field<RecallTaskName>("task", (v) => RECALL_TASKS.includes(v as RecallTaskName));
    const tokens = [bosTokenId, ...field<number[]>("prompt_tokens", isIds)];
    const questionStart = tokens.lastIndexOf(markers.question);
    const questionEnd = tokens.indexOf(markers.questionMark, questionStart) + 1;
    if (questionStart < 0 || questionEnd === 0) throw new Error(`${path}:${index + 1}: no question in the prompt`);
    const needles = field<number[]>("needle_positions", isIds).map((start) => {
      const end = tokens.indexOf(markers.period, start) + 1;
      if (end === 0 || end > questionStart) throw new Error(`${path}:${index + 1}: the fact at ${start} does not end before the question`);
      return { start, end };
    });
    return {
      task,
      length: tokens.length,
      depth: field<number>("depth", (v) => typeof v === "number" && v >= 0 && v <= 1),
      tokens,
      questionStart,
      questionEnd,
      needles,
      answer: field<number[]>("answer_tokens", isIds),
      index,
    };
  });
}

/**
 * A balanced subset: per task kind, prompt length and depth (only the `lengths`
 * and `depths` given, when given), the first `perGroup` tasks in file order.
 */
export function selectRecallTasks(
  tasks: readonly RecallTask[],
  options: { perGroup: number; lengths?: readonly number[]; depths?: readonly number[] },
): RecallTask[] {
  const taken = new Map<string, number>();
  return tasks.filter((t) => {
    if (options.lengths && !options.lengths.includes(t.length)) return false;
    if (options.depths && !options.depths.includes(t.depth)) return false;
    const key = `${t.task}/${t.length}/${t.depth}`;
    const count = taken.get(key) ?? 0;
    if (count >= options.perGroup) return false;
    taken.set(key, count + 1);
    return true;
  });
}
