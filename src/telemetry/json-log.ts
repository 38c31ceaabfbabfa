export type LogFields = Record<string, unknown>;
export type LogSink = (fields: LogFields) => void;

/** One JSON object per line on stderr, the shape log collectors in a pod pick up. */
export const jsonLog: LogSink = (fields) => {
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), ...fields }) + "\n");
};
