// A BACnet/IP client built on @bacnet-js/client, an implementation independent of bacpypes3.
//
//   node client.js '{"serverPort": 47808, "clientPort": 47999, "steps": [...]}'
//
// Binds 127.0.0.1:clientPort and broadcasts to 127.255.255.255:serverPort, so nothing leaves
// loopback. Runs the steps in order and prints one JSON array with a result per step:
//   {"op": "whoIs", "waitMs": 1500}                  -> [{deviceId, net, adr}] (a global Who-Is)
//   {"op": "readProperty", "target": T, "objectType": n, "instance": n, "property": n}
//                                                     -> [values]
//   {"op": "readPropertyMultiple", "target": T, "objects": [{"objectType", "instance", "properties": [n]}]}
//                                                     -> [{objectType, instance, values: {property: [values]}}]
//   {"op": "writeProperty", "target": T, "objectType": n, "instance": n, "property": n, "real": x}
//                                                     -> "ok"
// T is {"net": 50, "adr": [2]} for a routed meter, or null for the router itself. A failed
// step gives {"error": "..."}.
'use strict';

const Bacnet = require('@bacnet-js/client').default;

const ARRAY_ALL = 0xffffffff;
const REAL = 4;
const GLOBAL = 0xffff;

function receiver(program, target) {
  const address = `127.0.0.1:${program.serverPort}`;
  return target ? { address, net: target.net, adr: target.adr } : { address };
}

function plain(values) {
  return values.map((v) => (v.value !== null && typeof v.value === 'object' && 'value' in v.value ? v.value.value : v.value));
}

async function run(client, program, step) {
  switch (step.op) {
    case 'whoIs': {
      const found = [];
      const listener = (device) => {
        found.push({ deviceId: device.payload.deviceId, net: device.header.sender.net ?? null, adr: device.header.sender.adr ?? null });
      };
      client.on('iAm', listener);
      client.whoIs({ net: GLOBAL });
      await new Promise((resolve) => setTimeout(resolve, step.waitMs ?? 1500));
      client.off('iAm', listener);
      return found;
    }
    case 'readProperty': {
      const result = await client.readProperty(receiver(program, step.target), { type: step.objectType, instance: step.instance }, step.property);
      return plain(result.values);
    }
    case 'readPropertyMultiple': {
      const request = step.objects.map((o) => ({
        objectId: { type: o.objectType, instance: o.instance },
        properties: o.properties.map((id) => ({ id, index: ARRAY_ALL })),
      }));
      const result = await client.readPropertyMultiple(receiver(program, step.target), request);
      return result.values.map((o) => ({
        objectType: o.objectId.type,
        instance: o.objectId.instance,
        values: Object.fromEntries(o.values.map((p) => [p.id, plain(p.value)])),
      }));
    }
    case 'writeProperty': {
      await client.writeProperty(receiver(program, step.target), { type: step.objectType, instance: step.instance }, step.property,
        [{ type: REAL, value: step.real }], {});
      return 'ok';
    }
    default:
      throw new Error(`unknown op ${step.op}`);
  }
}

async function main() {
  const program = JSON.parse(process.argv[2]);
  const client = new Bacnet({
    port: program.clientPort,
    interface: '127.0.0.1',
    broadcastAddress: `127.255.255.255:${program.serverPort}`,
    apduTimeout: 3000,
  });
  client.on('error', (error) => process.stderr.write(`bacnet-js: ${error.message}\n`));
  await new Promise((resolve) => setTimeout(resolve, 200)); // the socket binds asynchronously
  const results = [];
  for (const step of program.steps) {
    try {
      results.push(await run(client, program, step));
    } catch (error) {
      results.push({ error: error.message });
    }
  }
  client.close();
  process.stdout.write(JSON.stringify(results) + '\n');
}

main().catch((error) => {
  process.stderr.write(`${error.stack}\n`);
  process.exit(1);
});
