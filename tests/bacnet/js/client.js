// A BACnet/IP client built on @bacnet-js/client, an implementation independent of bacpypes3.
//
//   node client.js '{"serverPort": 47808, "clientPort": 47999, "steps": [...]}'
//
// By default it binds 127.0.0.1:clientPort, talks to the gateway at 127.0.0.1:serverPort and
// broadcasts to 127.255.255.255:serverPort, so nothing leaves loopback. On a host of a test
// network namespace, "interface", "server" ("ip:port") and "broadcastAddress" ("ip:port") say
// where instead. Runs the steps in order and prints one JSON array with a result per step:
//   {"op": "whoIs", "waitMs": 1500}                  -> [{deviceId, net, adr}] (a global Who-Is)
//   {"op": "readProperty", "target": T, "objectType": n, "instance": n, "property": n}
//                                                     -> [values]
//   {"op": "readPropertyMultiple", "target": T, "objects": [{"objectType", "instance", "properties": [n]}]}
//                                                     -> [{objectType, instance, values: {property: [values]}}]
//   {"op": "writeProperty", "target": T, "objectType": n, "instance": n, "property": n, "real": x}
//                                                     (or "text": "..." for a CharacterString, "unsigned": n)
//                                                     -> "ok"
//   {"op": "subscribeCov", "target": T, "objectType": n, "instance": n, "processId": n, "lifetime": n, "waitMs": 4000}
//                                                     -> [notifications] (unconfirmed, heard within waitMs of the
//                                                        acknowledged subscription): {device, objectType, instance,
//                                                        timeRemaining, values: {property: [values]}}
//   {"op": "registerForeignDevice", "bbmd": "ip:port", "ttl": n}
//                                                     -> "ok" once the BBMD accepted
//   {"op": "whoIsThroughBBMD", "bbmd": "ip:port", "waitMs": 1500}
//                                                     -> as whoIs, as Distribute-Broadcast-To-Network
//   {"op": "readBDT", "bbmd": "ip:port"}             -> ["ip:port mask m", ...]
//   {"op": "writeBDT", "bbmd": "ip:port"}            -> {"result": BVLC result code}
//   {"op": "confirmed", "target": T, "request": R, "waitMs": 3000}
//                                                     -> the answer as it came, see `answer()`:
//      {"pdu": "simpleAck" | "complexAck" | "error" | "reject" | "abort" | "rejectMessageToNetwork" | "none", ...}
//   R is one of (encoded with the library's service encoders, or as given):
//      {"service": "readPropertyMultiple", "objects": [{"objectType", "instance", "properties": [n]}]}
//      {"service": "writePropertyMultiple", "objects": [{"objectType", "instance", "properties": [{"property", "real"}]}]}
//      {"service": "deviceCommunicationControl", "enableDisable": 0|1|2, "minutes": n, "password": "..."}
//      {"service": "reinitializeDevice", "state": n, "password": "..."}
//      {"service": n, "hex": "..."}  (a service choice and the request's body, malformed on purpose)
//     and may say "maxApdu" (the library's code, 0 = 50 octets) and "maxSegments" (0 = none).
//   {"op": "networkNumberIs", "network": n, "configured": true}
//                                                     -> "sent" (a Network-Number-Is to the gateway, as a
//                                                        router of the IP network would announce it)
// T is {"net": 50, "adr": [2]} for a routed meter, or null for the router itself. A failed
// step gives {"error": "..."}.
//
// The library has no Read-BDT (3.3.2 drops a Read-Broadcast-Distribution-Table-Ack as an unknown
// BVLC function): readBDT sends the request with the library's BVLC encoder over its transport and
// checks the answer's header with the library's BVLC decoder; only the table's 10-byte entries
// (BACnet J.2.2.1: 4 bytes IP, 2 bytes port, 4 bytes mask) are read here.
'use strict';

const Bacnet = require('@bacnet-js/client').default;
const { BvlcResultPurpose, BVLC_HEADER_LENGTH } = require('@bacnet-js/client');
const bvlc = require('@bacnet-js/client/dist/lib/bvlc');
const Transport = require('@bacnet-js/client/dist/lib/transport').default;

const baNpdu = require('@bacnet-js/client/dist/lib/npdu');
const baApdu = require('@bacnet-js/client/dist/lib/apdu');
const baAsn1 = require('@bacnet-js/client/dist/lib/asn1');
const services = require('@bacnet-js/client/dist/lib/services');
const {
  ConfirmedServiceChoice, MaxApduLengthAccepted, MaxSegmentsAccepted, NetworkLayerMessageType, NpduControlBit, NpduControlPriority, PduConReqBit,
  PduType,
} = require('@bacnet-js/client/dist/lib/enum');

const ARRAY_ALL = 0xffffffff;
const NO_PRIORITY = 0;
const UNSIGNED = 2;
const REAL = 4;
const CHARACTER_STRING = 7;
const GLOBAL = 0xffff;
const BDT_ENTRY_LENGTH = 10;

function receiver(program, target) {
  const address = program.server ?? `127.0.0.1:${program.serverPort}`;
  return target ? { address, net: target.net, adr: target.adr } : { address };
}

async function collectIAms(client, waitMs, send) {
  const found = [];
  const listener = (device) => {
    found.push({ deviceId: device.payload.deviceId, net: device.header.sender.net ?? null, adr: device.header.sender.adr ?? null });
  };
  client.on('iAm', listener);
  send();
  await new Promise((resolve) => setTimeout(resolve, waitMs ?? 1500));
  client.off('iAm', listener);
  return found;
}

// Sends a BVLL message of `func` with no payload; resolves with the first datagram from `bbmd`.
function bvllExchange(transport, bbmd, func) {
  return new Promise((resolve, reject) => {
    const [host] = bbmd.split(':');
    const timeout = setTimeout(() => { transport.off('message', onMessage); reject(new Error('ERR_TIMEOUT')); }, 3000);
    const onMessage = (buffer, sender) => {
      if (sender.split(':')[0] !== host) return;
      clearTimeout(timeout);
      transport.off('message', onMessage);
      resolve(buffer);
    };
    transport.on('message', onMessage);
    const request = Buffer.alloc(BVLC_HEADER_LENGTH);
    bvlc.encode(request, func, BVLC_HEADER_LENGTH);
    transport.send(request, BVLC_HEADER_LENGTH, bbmd);
  });
}

async function readBDT(transport, bbmd) {
  const answer = await bvllExchange(transport, bbmd, BvlcResultPurpose.READ_BROADCAST_DISTRIBUTION_TABLE);
  const header = bvlc.decode(answer, 0);
  if (!header || header.func !== BvlcResultPurpose.READ_BROADCAST_DISTRIBUTION_TABLE_ACK) {
    throw new Error(`not a Read-BDT-Ack: ${answer.toString('hex')}`);
  }
  const entries = [];
  for (let at = header.len; at + BDT_ENTRY_LENGTH <= header.msgLength; at += BDT_ENTRY_LENGTH) {
    const ip = [...answer.subarray(at, at + 4)].join('.');
    const mask = [...answer.subarray(at + 6, at + 10)].join('.');
    entries.push(`${ip}:${answer.readUInt16BE(at + 4)} mask ${mask}`);
  }
  return entries;
}

async function writeBDT(client, transport, bbmd) {
  const [host] = bbmd.split(':');
  const result = new Promise((resolve) => {
    const onResult = (content) => {
      if (content.header.sender.address.split(':')[0] !== host) return;
      client.off('bvlcResult', onResult);
      resolve({ result: content.payload.resultCode });
    };
    client.on('bvlcResult', onResult);
  });
  const request = Buffer.alloc(BVLC_HEADER_LENGTH);
  bvlc.encode(request, BvlcResultPurpose.WRITE_BROADCAST_DISTRIBUTION_TABLE, BVLC_HEADER_LENGTH);
  transport.send(request, BVLC_HEADER_LENGTH, bbmd);
  return result;
}

// The body of a confirmed request; returns its service choice.
function encodeRequest(buffer, request) {
  switch (request.service) {
    case 'subscribeCov':
      services.SubscribeCov.encode(buffer, request.processId, { type: request.objectType, instance: request.instance }, false,
        false, request.lifetime);
      return ConfirmedServiceChoice.SUBSCRIBE_COV;
    case 'readPropertyMultiple':
      services.ReadPropertyMultiple.encode(buffer, accessSpecifications(request.objects));
      return ConfirmedServiceChoice.READ_PROPERTY_MULTIPLE;
    case 'writePropertyMultiple':
      services.WritePropertyMultiple.encodeObject(buffer, request.objects.map((o) => ({
        objectId: { type: o.objectType, instance: o.instance },
        values: o.properties.map((p) => ({
          property: { id: p.property, index: ARRAY_ALL }, value: [{ type: REAL, value: p.real }], priority: NO_PRIORITY,
        })),
      })));
      return ConfirmedServiceChoice.WRITE_PROPERTY_MULTIPLE;
    case 'deviceCommunicationControl':
      services.DeviceCommunicationControl.encode(buffer, request.minutes ?? 0, request.enableDisable, request.password);
      return ConfirmedServiceChoice.DEVICE_COMMUNICATION_CONTROL;
    case 'reinitializeDevice':
      services.ReinitializeDevice.encode(buffer, request.state, request.password);
      return ConfirmedServiceChoice.REINITIALIZE_DEVICE;
    default: {
      const body = Buffer.from(request.hex, 'hex');
      body.copy(buffer.buffer, buffer.offset);
      buffer.offset += body.length;
      return request.service;
    }
  }
}

function accessSpecifications(objects) {
  return objects.map((o) => ({
    objectId: { type: o.objectType, instance: o.instance },
    properties: o.properties.map((id) => ({ id, index: ARRAY_ALL })),
  }));
}

// Subscribes (unconfirmed notifications) and collects the notifications heard for waitMs after the ack.
// The request goes through `confirmed`: the library's subscribeCov (3.3.2) encodes a routed NPDU
// without a hop count (0), which a router drops.
async function subscribeCov(client, transport, program, step) {
  const notifications = [];
  const listener = (content) => {
    const p = content.payload;
    notifications.push({
      device: p.initiatingDeviceId.instance,
      objectType: p.monitoredObjectId.type,
      instance: p.monitoredObjectId.instance,
      timeRemaining: p.timeRemaining,
      values: Object.fromEntries(p.values.map((v) => [v.property.id, plain(v.value)])),
    });
  };
  client.on('covNotifyUnconfirmed', listener);
  try {
    const request = { service: 'subscribeCov', objectType: step.objectType, instance: step.instance, processId: step.processId,
      lifetime: step.lifetime ?? 0 };
    const acknowledged = await confirmed(client, transport, program, { target: step.target, request });
    if (acknowledged.pdu !== 'simpleAck') throw new Error(`subscription not acknowledged: ${JSON.stringify(acknowledged)}`);
    await new Promise((resolve) => setTimeout(resolve, step.waitMs ?? 3000));
  } finally {
    client.off('covNotifyUnconfirmed', listener);
  }
  return notifications;
}

// A WritePropertyMultiple-Error (BACnet 21) is [0] { class, code } then [1] { object, property, [index] }.
function enumerated(buffer, at) {
  const t = baAsn1.decodeTagNumberAndValue(buffer, at);
  const v = baAsn1.decodeEnumerated(buffer, at + t.len, t.value);
  return { value: v.value, at: at + t.len + v.len };
}

// What answered the request with `invokeId`, decoded from the datagram with the library's decoders.
function answer(buffer, invokeId) {
  const header = bvlc.decode(buffer, 0);
  if (!header) return null;
  const npdu = baNpdu.decode(buffer, header.len);
  if (!npdu) return null;
  if (npdu.funct & NpduControlBit.NETWORK_LAYER_MESSAGE) {
    if (npdu.networkMsgType !== NetworkLayerMessageType.REJECT_MESSAGE_TO_NETWORK) return null;
    const at = header.len + npdu.len;
    return { pdu: 'rejectMessageToNetwork', reason: buffer[at], network: buffer.readUInt16BE(at + 1) };
  }
  let at = header.len + npdu.len;
  const type = baApdu.getDecodedType(buffer, at) & 0xf0;
  if (buffer[at + 1] !== invokeId) return null;
  switch (type) {
    case PduType.SIMPLE_ACK:
      return { pdu: 'simpleAck', service: buffer[at + 2] };
    case PduType.COMPLEX_ACK:
      return { pdu: 'complexAck', service: baApdu.decodeComplexAck(buffer, at).service };
    case PduType.REJECT:
      return { pdu: 'reject', reason: buffer[at + 2] };
    case PduType.ABORT:
      return { pdu: 'abort', reason: buffer[at + 2], server: !!(buffer[at] & 1) };
    case PduType.ERROR: {
      const service = buffer[at + 2];
      at += 3;
      const nested = baAsn1.decodeIsOpeningTagNumber(buffer, at, 0);
      if (nested) at += 1;
      const errorClass = enumerated(buffer, at);
      const errorCode = enumerated(buffer, errorClass.at);
      const result = { pdu: 'error', service, errorClass: errorClass.value, errorCode: errorCode.value, nested };
      at = errorCode.at;
      if (nested && baAsn1.decodeIsClosingTagNumber(buffer, at, 0) && baAsn1.decodeIsOpeningTagNumber(buffer, at + 1, 1)) {
        at += 2;
        const objectTag = baAsn1.decodeTagNumberAndValue(buffer, at);
        const object = baAsn1.decodeObjectId(buffer, at + objectTag.len);
        at += objectTag.len + object.len;
        result.firstFailed = { objectType: object.objectType, instance: object.instance, property: null };
        if (baAsn1.decodeIsContextTag(buffer, at, 1)) result.firstFailed.property = enumerated(buffer, at).value;
      }
      return result;
    }
    default:
      return null;
  }
}

// Sends one confirmed request and resolves with what answered it ({"pdu": "none"} after waitMs).
function confirmed(client, transport, program, step) {
  const invokeId = client._getInvokeId();
  const target = receiver(program, step.target);
  const buffer = client._getApduBuffer(target);
  baNpdu.encode(buffer, NpduControlPriority.NORMAL_MESSAGE | NpduControlBit.EXPECTING_REPLY, target, null, 255, 0, 0);
  const request = step.request;
  const maxSegments = request.maxSegments ?? MaxSegmentsAccepted.SEGMENTS_65;
  const type = PduType.CONFIRMED_REQUEST | (maxSegments ? PduConReqBit.SEGMENTED_RESPONSE_ACCEPTED : 0);
  const at = buffer.offset;
  baApdu.encodeConfirmedServiceRequest(buffer, type, 0, maxSegments, request.maxApdu ?? MaxApduLengthAccepted.OCTETS_1476,
    invokeId, 0, 0);
  buffer.buffer[at + 3] = encodeRequest(buffer, request); // the service choice, known once encoded
  return new Promise((resolve) => {
    const done = (result) => { clearTimeout(timeout); transport.off('message', onMessage); resolve(result); };
    const timeout = setTimeout(() => done({ pdu: 'none' }), step.waitMs ?? 3000);
    const onMessage = (datagram) => { const result = answer(datagram, invokeId); if (result) done(result); };
    transport.on('message', onMessage);
    client.sendBvlc(target, buffer);
  });
}

// The value a writeProperty step gives: "real", "text" (a CharacterString) or "unsigned".
function writtenValue(step) {
  if (step.text !== undefined) return { type: CHARACTER_STRING, value: step.text };
  if (step.unsigned !== undefined) return { type: UNSIGNED, value: step.unsigned };
  return { type: REAL, value: step.real };
}

function plain(values) {
  return values.map((v) => (v.value !== null && typeof v.value === 'object' && 'value' in v.value ? v.value.value : v.value));
}

async function run(client, transport, program, step) {
  switch (step.op) {
    case 'whoIs':
      return collectIAms(client, step.waitMs, () => client.whoIs({ net: GLOBAL }));
    case 'whoIsThroughBBMD':
      return collectIAms(client, step.waitMs, () => client.whoIsThroughBBMD({ address: step.bbmd, net: GLOBAL }));
    case 'registerForeignDevice':
      await client.registerForeignDevice({ address: step.bbmd }, step.ttl);
      return 'ok';
    case 'readBDT':
      return readBDT(transport, step.bbmd);
    case 'writeBDT':
      return writeBDT(client, transport, step.bbmd);
    case 'readProperty': {
      const result = await client.readProperty(receiver(program, step.target), { type: step.objectType, instance: step.instance }, step.property);
      return plain(result.values);
    }
    case 'readPropertyMultiple': {
      const result = await client.readPropertyMultiple(receiver(program, step.target), accessSpecifications(step.objects));
      return result.values.map((o) => ({
        objectType: o.objectId.type,
        instance: o.objectId.instance,
        values: Object.fromEntries(o.values.map((p) => [p.id, plain(p.value)])),
      }));
    }
    case 'confirmed':
      return confirmed(client, transport, program, step);
    case 'subscribeCov':
      return subscribeCov(client, transport, program, step);
    case 'networkNumberIs': {
      const target = receiver(program, null);
      const buffer = client._getApduBuffer(target);
      baNpdu.encode(buffer, NpduControlPriority.NORMAL_MESSAGE | NpduControlBit.NETWORK_LAYER_MESSAGE, target, null, 0,
        NetworkLayerMessageType.NETWORK_NUMBER_IS, 0);
      buffer.buffer.writeUInt16BE(step.network, buffer.offset);
      buffer.buffer[buffer.offset + 2] = step.configured ? 1 : 0;
      buffer.offset += 3;
      client.sendBvlc(target, buffer);
      await new Promise((resolve) => setTimeout(resolve, 200));
      return 'sent';
    }
    case 'writeProperty': {
      await client.writeProperty(receiver(program, step.target), { type: step.objectType, instance: step.instance }, step.property,
        [writtenValue(step)], {});
      return 'ok';
    }
    default:
      throw new Error(`unknown op ${step.op}`);
  }
}

async function main() {
  const program = JSON.parse(process.argv[2]);
  const transport = new Transport({
    port: program.clientPort,
    interface: program.interface ?? '127.0.0.1',
    broadcastAddress: program.broadcastAddress ?? `127.255.255.255:${program.serverPort}`,
    reuseAddr: true,
  });
  const client = new Bacnet({ transport, apduTimeout: 3000 });
  client.on('error', (error) => process.stderr.write(`bacnet-js: ${error.message}\n`));
  await new Promise((resolve) => setTimeout(resolve, 200)); // the socket binds asynchronously
  const results = [];
  for (const step of program.steps) {
    try {
      results.push(await run(client, transport, program, step));
    } catch (error) {
      results.push({ error: error.message });
    }
  }
  client.close();
  // Exit once the results are out: the library's transport keeps each broadcast it sent for 10 s (a timer,
  // to know its own echo), which would keep the process that long after a Who-Is.
  process.stdout.write(JSON.stringify(results) + '\n', () => process.exit(0));
}

main().catch((error) => {
  process.stderr.write(`${error.stack}\n`);
  process.exit(1);
});
