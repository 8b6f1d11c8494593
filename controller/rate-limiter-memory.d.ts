// The in-memory limiter alone: the package's main module also loads its Redis, SQL, Mongo, etcd
// and other back ends, which the controller bundle would carry unused.
declare module "rate-limiter-flexible/lib/RateLimiterMemory.js" {
  import { RateLimiterMemory } from "rate-limiter-flexible";
  export default RateLimiterMemory;
}
