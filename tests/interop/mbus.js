'use strict';
// Drive libmbus (through node-mbus) against an M-Bus TCP gateway for mbuskit's interop tests.
//
//   node mbus.js HOST PORT TIMEOUT_MS OP...
//
// OP is "get:ADDRESS" (a primary address 0..250 or a 16-character secondary address, read with
// libmbus's mbus_sendrecv_request after the usual SND_NKE pings) or "scan" (libmbus's secondary
// wildcard search). Prints one JSON object per line: {"op", "ok", "data" | "error", "seconds"}.
const MbusMaster = require('node-mbus');

function run(master, op) {
    return new Promise((resolve) => {
        const start = process.hrtime.bigint();
        const done = (err, data) => {
            const seconds = Number(process.hrtime.bigint() - start) / 1e9;
            if (err) {
                resolve({ op, ok: false, error: String(err && err.message ? err.message : err), seconds });
            } else {
                resolve({ op, ok: true, data, seconds });
            }
        };
        if (op === 'scan') {
            master.scanSecondary(done);
        } else if (op.startsWith('get:')) {
            const address = op.slice(4);
            master.getData(/^\d+$/.test(address) ? Number(address) : address, done);
        } else {
            done(new Error(`unknown op ${op}`));
        }
    });
}

async function main() {
    const [host, port, timeout, ...ops] = process.argv.slice(2);
    if (!host || !port || !timeout || ops.length === 0) {
        console.error('usage: node mbus.js HOST PORT TIMEOUT_MS OP...');
        process.exit(2);
    }
    const master = new MbusMaster({ host, port: Number(port), timeout: Number(timeout), autoConnect: true });
    const connected = await new Promise((resolve) => master.connect((err) => resolve(err)));
    if (connected) {
        console.log(JSON.stringify({ op: 'connect', ok: false, error: String(connected) }));
        process.exit(1);
    }
    for (const op of ops) {
        console.log(JSON.stringify(await run(master, op)));
    }
    await new Promise((resolve) => master.close(() => resolve()));
}

main().catch((err) => {
    console.error(err);
    process.exit(1);
});
