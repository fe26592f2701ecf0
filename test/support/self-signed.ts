import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface SelfSigned {
  /** PEM private key and certificate. */
  key: string;
  cert: string;
  keyFile: string;
  certFile: string;
}

/** Whether the `openssl` command line is there to make certificates with. */
export function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * A throwaway self-signed certificate (its own CA, valid one day) for 127.0.0.1, made with the
 * `openssl` command line into `dir` (key.pem, cert.pem). For a test HTTPS server that clients
 * verify by trusting exactly this certificate.
 */
export function selfSignedCert(dir: string, ip = '127.0.0.1'): SelfSigned {
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      `/CN=${ip}`,
      '-addext',
      `subjectAltName=IP:${ip}`,
      '-keyout',
      keyFile,
      '-out',
      certFile,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return {
    key: fs.readFileSync(keyFile, 'utf8'),
    cert: fs.readFileSync(certFile, 'utf8'),
    keyFile,
    certFile,
  };
}
