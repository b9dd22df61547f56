// Kernel declarations (shaders/kernel.ts): the WGSL header and the params packing follow WGSL's
// layout rules, bindings are numbered in declared order (optional ones skipped, lists expanded),
// variants are built once, the grid helper spreads workgroups, and a kernel declared in a few
// lines runs through device.dispatch and computes what its body says.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose, device, throwsWith } from '../helpers.ts';
import { tensor } from '../../engine/index.ts';
import { flatKernel } from '../../shaders/common.ts';
import { binaryKernel } from '../../shaders/elementwise.ts';
import { convForwardKernel } from '../../shaders/conv.ts';
import { gramKernel } from '../../shaders/integrate.ts';
import { kernel, MAX_GROUPS, spreadGroups } from '../../shaders/kernel.ts';

const test = suite('kernel declarations');

test('spreadGroups: all along x up to 65535 workgroups, past that evenly over y, never fewer than asked', () => {
  assert.equal(spreadGroups(0), [1, 1]);
  assert.equal(spreadGroups(1), [1, 1]);
  assert.equal(spreadGroups(MAX_GROUPS), [MAX_GROUPS, 1]);
  assert.equal(spreadGroups(MAX_GROUPS + 1), [32768, 2]);
  for (const n of [70000, 131071, 200001, 65535 * 7 + 3]) {
    const [x, y] = spreadGroups(n);
    assert.ok(x <= MAX_GROUPS && y <= MAX_GROUPS && x * y >= n && x * (y - 1) < n, `${n} → ${x}×${y}`);
  }
});

test('params: WGSL struct and packing agree on offsets (dims8 16-byte aligned), f32 as floats', () => {
  const src = binaryKernel.source({ code: 'add', broadcast: true });
  const dims8 = 'array<vec4<u32>, 2>';
  const struct = `struct Params { n: u32, rank: u32, nan: u32, shape: ${dims8}, sa: ${dims8}, sb: ${dims8}, s: f32 }`;
  assert.ok(src.includes(struct), struct);
  // n, rank, nan at words 0..2; shape 4..11 (aligned to 16 bytes); sa 12..19; sb 20..27; s at 28
  assert.is(binaryKernel.paramBytes, 29 * 4);
  const buf = new ArrayBuffer(256);
  const words = new Uint32Array(buf);
  const floats = new Float32Array(buf);
  words.fill(0xdeadbeef);
  const params = { n: 7, rank: 2, nan: 0x7fc00000, shape: [3, 5], sa: [5, 1], sb: [0, 1], s: 0.5 };
  binaryKernel.pack(params, words, floats, 0);
  assert.equal([...words.slice(0, 3)], [7, 2, 0x7fc00000]);
  assert.equal([...words.slice(4, 12)], [3, 5, 0, 0, 0, 0, 0, 0], 'shape, zero-padded to 8');
  assert.equal([...words.slice(12, 14)], [5, 1]);
  assert.equal([...words.slice(20, 22)], [0, 1]);
  assert.is(floats[28], 0.5);
  assert.is(words[3], 0xdeadbeef, 'the alignment gap is left alone');
});

test('bindings: numbered in declared order, optional ones skipped, lists expanded', () => {
  const withBias = convForwardKernel.source({ bias: true, wg: 64, tm: 16, rowQuads: false });
  const without = convForwardKernel.source({ bias: false, wg: 64, tm: 16, rowQuads: false });
  for (const [line, present] of [
    ['@group(0) @binding(1) var<storage, read> X: array<f32>;', true],
    ['@group(0) @binding(2) var<storage, read> Wp: array<vec4<f32>>;', true],
    ['@group(0) @binding(3) var<storage, read_write> Y: array<f32>;', true],
    ['@group(0) @binding(4) var<storage, read> Bias: array<f32>;', false],
  ] as const) {
    assert.ok(withBias.includes(line), line);
    assert.is(without.includes(line), present, line);
  }
  const entry = 'fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {';
  assert.ok(withBias.includes(`@compute @workgroup_size(64)\n${entry}`));
  const gram = gramKernel.source({ k: 3 });
  assert.ok(gram.includes('@group(0) @binding(1) var<storage, read_write> work: array<f32>;'));
  for (const j of [0, 1, 2]) {
    assert.ok(gram.includes(`@group(0) @binding(${2 + j}) var<storage, read> g${j}: array<vec4<f32>>;`), `g${j}`);
  }
  assert.not.ok(gram.includes('g3'));
});

test('variants: one source per distinct variant, the same string object every time', () => {
  const a = binaryKernel.source({ code: 'mul', broadcast: false });
  assert.ok(binaryKernel.source({ broadcast: false, code: 'mul' }) === a, 'the key order of a variant does not matter');
  assert.ok(binaryKernel.source({ code: 'mul', broadcast: true }) !== a);
});

test('a declaration whose params exceed the 256-byte uniform slot is refused', () => {
  const params = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`d${i}`, 'dims8' as const]));
  const declare = () =>
    kernel({
      name: 'tooBig',
      variant: {},
      params,
      bindings: {},
      workgroupSize: 1,
      builtins: {},
      main: () => '',
      grid: () => [1],
    });
  throwsWith(declare, 'tooBig', '288 bytes');
});

test('a kernel declared in a few lines runs: y = a·x + b over 70,000 elements (a grid spread over y)', async () => {
  const axpb = flatKernel({
    name: 'axpb',
    variant: {},
    params: { n: 'u32', a: 'f32', b: 'f32' },
    bindings: { xs: { read: 'f32' }, ys: { write: 'f32' } },
    main: () => `  if (i >= params.n) { return; }
  ys[i] = params.a * xs[i] + params.b;`,
    count: (p) => p.n,
  });
  const n = 70000 * 256 + 5; // more than 65535 workgroups of 256
  const host = Float32Array.from({ length: n }, (_, i) => (i % 1000) / 7 - 50);
  const x = tensor(host, [n]);
  const y = tensor(new Float32Array(n), [n]);
  device.dispatch({ kernel: axpb, params: { n, a: 1.5, b: -2 }, bindings: { xs: x.rawBuffer, ys: y.rawBuffer } });
  // a·x then + b in float32 (or one fma): error ≤ u·(|a·x| + |y|) ≤ 2u·(|y| + |b|), u = 2^-24,
  // so rtol 2u and atol 2u·|b| = 2^-22, each doubled for margin
  const got = await y.toArray();
  const want = Array.from(host, (v) => 1.5 * v - 2);
  assertClose(got, want, 2 ** -22, 2 ** -21, 'a·x + b');
  x.dispose();
  y.dispose();
});

test('a list binding given the wrong number of buffers is refused before anything is recorded', () => {
  const x = tensor([1, 2, 3, 4], [4]);
  const d0 = device.batcher.stats.dispatches;
  const params = { n: 4, n4: 1, rowBase: 0, chunk4: 16384 };
  const buf = x.buffer();
  throwsWith(
    () => device.dispatch({ kernel: gramKernel, variant: { k: 2 }, params, bindings: { work: buf, g: [buf] } }),
    'integrateGram',
    "binding 'g'",
    'takes 2 buffers, got 1',
  );
  assert.is(device.batcher.stats.dispatches, d0);
  x.dispose();
});

test.run();
