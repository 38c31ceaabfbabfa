import type { Deadline } from "@grpc/grpc-js";

/** Timer and transit jitter between the client's deadline and the server's. */
const SLACK_MS = 10;
/** gRPC C-core rounds grpc-timeout up to three significant digits: the server's deadline may fall up to 1% after the client's. */
const SLACK_SHARE = 0.01;

/**
 * Whether a call cancelled at `now` was ended by its deadline rather than
 * by the client. A client whose deadline passes resets the stream exactly as
 * one that cancels, usually just before the server's own deadline passes:
 * the server counts from when the grpc-timeout header arrived, which the
 * client measured as it sent it and may have rounded up. So a cancellation
 * within that slack of the deadline is the deadline.
 */
export function cancelledByDeadline(deadline: Deadline, receivedAt: number, now: number): boolean {
  if (deadline === Infinity) return false;
  const at = Number(deadline);
  return now >= at - SLACK_MS - (at - receivedAt) * SLACK_SHARE;
}
