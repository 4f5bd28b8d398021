// A stock third-party client (polkadot.js) against a DSP dev node, knowing nothing but the
// chain's metadata: decode every pallet-dsp storage item, call the DspApi runtime API, and
// build, sign and submit a `dsp.claim` with a pass and a receipt signed here.
//
// Usage: node third_party_client.mjs ws://127.0.0.1:9944
// Exit code 0 and a final "third-party client: OK" line mean every check passed.

import { ApiPromise, WsProvider } from '@polkadot/api';
import { Keyring } from '@polkadot/keyring';
import { compactAddLength, stringToU8a, u8aConcat, u8aToHex } from '@polkadot/util';
import { cryptoWaitReady } from '@polkadot/util-crypto';

const url = process.argv[2] ?? 'ws://127.0.0.1:9944';

function check(condition, message) {
  if (!condition) {
    console.error(`FAIL: ${message}`);
    process.exit(1);
  }
}

await cryptoWaitReady();
const provider = new WsProvider(url, 1000, {}, 30_000);
const api = await ApiPromise.create({ provider, noInitWarn: true, throwOnConnect: true });
const keyring = new Keyring({ type: 'sr25519' });
const alice = keyring.addFromUri('//Alice');
const ferdie = keyring.addFromUri('//Ferdie');
const viewer = keyring.addFromUri('//JsViewer');

// 1. Every storage item of the pallet decodes from metadata alone.
const storageNames = Object.keys(api.query.dsp);
check(storageNames.length >= 8, `expected the dsp storage items, got ${storageNames}`);
for (const name of storageNames) {
  const query = api.query.dsp[name];
  if (query.creator.meta.type.isPlain) {
    const value = await query();
    console.log(`dsp.${name} = ${JSON.stringify(value.toHuman())}`);
  } else {
    const entries = await query.entries();
    for (const [key, value] of entries) {
      key.args.forEach((arg) => arg.toHuman());
      value.toHuman();
    }
    console.log(`dsp.${name}: ${entries.length} entries decoded`);
  }
}
const origin = await api.query.dsp.origins(alice.address);
check(origin.isSome, 'Alice is a registered origin in the dev genesis');
check(origin.unwrap().signingKey.eq(alice.publicKey), 'origin signing key is Alice');
const settings = await api.query.dsp.defaultSettings();
check(settings.maxStreams.toNumber() === 2000, `default maxStreams ${settings.maxStreams}`);
check(api.consts.dsp.maxClaimBatch.toNumber() > 0, 'MaxClaimBatch constant readable');

// 2. The runtime API, described in the metadata too.
const threshold = await api.call.dspApi.p2pThreshold(alice.address);
check(threshold.isSome && threshold.unwrap().toNumber() === 2000, `p2pThreshold ${threshold}`);
const epoch = (await api.call.dspApi.currentEpoch()).toNumber();

// 3. A claim built and signed here: Alice (an authorised pass signer of stream 0) issues the
//    pass, the viewer signs a receipt for Ferdie, Ferdie submits.
const genesisHash = api.genesisHash.toU8a();
const pass = {
  genesisHash,
  stream: 0,
  epoch,
  viewer: viewer.publicKey,
  maxUnits: 1000,
  issuer: alice.publicKey,
};
const receipt = {
  genesisHash,
  stream: 0,
  epoch,
  seeder: ferdie.publicKey,
  viewer: viewer.publicKey,
  units: 250,
};
// SCALE((domain_tag, payload)): the tag as length-prefixed bytes, then the payload.
const signingPayload = (tag, typeName, value) =>
  u8aConcat(compactAddLength(stringToU8a(tag)), api.createType(typeName, value).toU8a());
const item = {
  pass: {
    payload: pass,
    signature: u8aToHex(alice.sign(signingPayload('dsp/viewer-pass/v1', 'DspPrimitivesViewerPass', pass))),
  },
  receipt: {
    payload: receipt,
    signature: u8aToHex(viewer.sign(signingPayload('dsp/receipt/v1', 'DspPrimitivesReceipt', receipt))),
  },
};

const events = await new Promise((resolve, reject) => {
  api.tx.dsp
    .claim([item])
    .signAndSend(ferdie, ({ status, events, dispatchError }) => {
      if (dispatchError) reject(new Error(`dispatch error ${dispatchError.toString()}`));
      if (status.isInBlock || status.isFinalized) resolve(events);
    })
    .catch(reject);
});
const names = events.map(({ event }) => `${event.section}.${event.method}`);
console.log(`claim events: ${names.join(', ')}`);
check(names.includes('system.ExtrinsicSuccess'), 'claim succeeded');
const claimed = events.find(({ event }) => event.section === 'dsp' && event.method === 'Claimed');
check(claimed, `no dsp.Claimed event in ${names}`);
check(claimed.event.data.units.toNumber() === 250, `claimed units ${claimed.event.data.units}`);
const credits = await api.query.dsp.credits(ferdie.address);
check(credits.unitsTotal.toNumber() === 250, `Ferdie's credits ${JSON.stringify(credits.toHuman())}`);

console.log('third-party client: OK');
await api.disconnect();
process.exit(0);
