import cliProgress from "cli-progress";

/** Where the evaluation reports how far it has got. */
export interface Progress {
  /** Starts a phase of `total` steps, ending the previous one. */
  phase(label: string, total: number): void;
  tick(detail?: string): void;
  stop(): void;
}

/** A progress bar on stderr; draws nothing when stderr is not a terminal. */
export function terminalProgress(): Progress {
  const bar = new cliProgress.SingleBar(
    {
      format: "{label} [{bar}] {value}/{total} | {duration_formatted} elapsed, eta {eta_formatted} | {detail}",
      stream: process.stderr,
      hideCursor: true,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  let running = false;
  return {
    phase(label, total) {
      if (running) bar.stop();
      bar.start(total, 0, { label, detail: "" });
      running = true;
    },
    tick(detail = "") {
      bar.increment(1, { detail });
    },
    stop() {
      if (running) bar.stop();
      running = false;
    },
  };
}

export const silentProgress: Progress = { phase() {}, tick() {}, stop() {} };
