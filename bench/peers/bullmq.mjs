// bench/peers/bullmq.mjs — BullMQ's side of `make bench-peers` (bench/peers/run.sh).
//
//   node bullmq.mjs PORT JOBS DUE_MS REDIS_PID
//
// Adds JOBS delayed jobs to a queue on the Redis at 127.0.0.1:PORT, every one
// due at DUE_MS (epoch milliseconds, the same moment for all), in addBulk
// chunks; then a Worker fires them. DUE_MS 0: a pilot adds 1% of the jobs
// (at least 1,000) to a scratch queue, which is then removed, and the due
// moment is set 1.5 times the add time it predicts (+ 3 s) from now, so
// adding ends before the jobs are due. A job counts as fired when its processor
// starts; its lateness is that moment minus DUE_MS. Completed jobs are kept
// (BullMQ's default), as tend keeps finished instances. Prints one line of
// key=value figures for run.sh:
//   add_s fire_s first_ms median_ms last_ms rss_redis_mb rss_node_mb overrun_s lead_s
import { readFileSync } from "node:fs";
import { Queue, Worker } from "bullmq";

const [port, jobs, dueArg, redisPid] = process.argv.slice(2).map(Number);
const chunk = Number(process.env.BENCH_PEERS_CHUNK || 1000);
const concurrency = Number(process.env.BENCH_PEERS_CONCURRENCY || 100);
const connection = { host: "127.0.0.1", port, maxRetriesPerRequest: null };

function peakRssMb(pid) {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function addAll(queue, count, dueMs) {
  for (let i = 0; i < count; i += chunk) {
    const batch = [];
    const now = Date.now();
    for (let k = i; k < Math.min(count, i + chunk); k++)
      batch.push({ name: "job", data: { n: k }, opts: { delay: Math.max(0, dueMs - now), jobId: `j${k}` } });
    await queue.addBulk(batch);
  }
}

let dueMs = dueArg;
if (!dueMs) {
  const pilot = new Queue("pilot", { connection });
  const count = Math.min(jobs, Math.max(1000, Math.floor(jobs / 100)));
  const p0 = Date.now();
  await addAll(pilot, count, p0 + 86400e3);
  const perJob = (Date.now() - p0) / count;
  await pilot.obliterate({ force: true });
  await pilot.close();
  dueMs = Math.ceil((Date.now() + 1.5 * perJob * jobs + 3000) / 1000) * 1000;
}
const queue = new Queue("bench", { connection });
await queue.waitUntilReady();
const t0 = Date.now();
await addAll(queue, jobs, dueMs);
const addEnd = Date.now();

const fired = new Float64Array(jobs);
let count = 0;
let resolveDone;
const done = new Promise((r) => (resolveDone = r));
const worker = new Worker(
  "bench",
  async () => {
    fired[count++] = Date.now() - dueMs;
    if (count === jobs) resolveDone();
  },
  { connection, concurrency, autorun: true },
);
// the last job counts once it is completed (stored), not only started
let completed = 0;
let lastCompleted = 0;
const allCompleted = new Promise((r) =>
  worker.on("completed", () => {
    if (++completed === jobs) {
      lastCompleted = Date.now();
      r();
    }
  }),
);
await done;
await allCompleted;
const rssNode = peakRssMb(process.pid);
const rssRedis = peakRssMb(redisPid);
await worker.close();
await queue.close();

const sorted = Array.from(fired).sort((a, b) => a - b);
const fmt = (x) => x.toFixed(1);
console.log(
  [
    `add_s=${((addEnd - t0) / 1000).toFixed(3)}`,
    `fire_s=${((lastCompleted - dueMs) / 1000).toFixed(3)}`,
    `first_ms=${fmt(sorted[0])}`,
    `median_ms=${fmt(sorted[Math.floor(jobs / 2)])}`,
    `last_ms=${fmt(lastCompleted - dueMs)}`,
    `rss_redis_mb=${fmt(rssRedis)}`,
    `rss_node_mb=${fmt(rssNode)}`,
    `overrun_s=${(Math.max(0, addEnd - dueMs) / 1000).toFixed(3)}`,
    `lead_s=${((dueMs - t0) / 1000).toFixed(1)}`,
  ].join(" "),
);
