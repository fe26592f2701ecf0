/**
 * Whether a process with this pid runs (signal 0 probes without signalling). EPERM means it
 * runs as someone we may not signal. Used to sweep what dead runs left behind: nft session
 * directories, the lab's and benches' network namespaces.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
