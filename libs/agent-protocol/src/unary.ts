import type { ServiceError } from '@grpc/grpc-js';

/** A unary call as a promise: `unary<Res>((cb) => client.method(req, cb))`. */
export function unary<Res>(start: (cb: (err: ServiceError | null, res?: Res) => void) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => start((err, res) => (err ? reject(err) : resolve(res!))));
}
