export { LAB } from './addresses.js';
export { LabError, run, type ExecOptions, type ExecResult } from './exec.js';
export {
  Lab,
  type LabClient,
  type LabOptions,
  type LabPod,
  type LabServer,
  type PodOptions,
  type ProbeOptions,
  type ProbeResult,
  type ServeOptions,
} from './lab.js';
