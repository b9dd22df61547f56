// MBT: the parameter count formula (models/mbt.ts header) against a count by hand, names,
// forward + backward with finite gradients, the bottleneck as the only cross-modal path,
// a few steps on a fixed batch, and bad input.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { randTensor, throwsWith } from '../helpers.ts';
import { add, crossEntropy, liveTensors, SGD, tensor, tidy, type Tensor } from '../../engine/index.ts';
import { MBT, MBT_VIT_BASE, type MBTConfig } from '../../models/mbt.ts';

const test = suite('mbt');

// audio: a 1×16×12 spectrogram in 4×4 patches (12 tokens); video: a 3×8×8 frame in 4×4 patches (4 tokens).
const modalities = {
  audio: { channels: 1, height: 16, width: 12, patch: 4 },
  video: { channels: 3, height: 8, width: 8, patch: 4 },
};
const small: MBTConfig = {
  modalities,
  width: 16,
  heads: 2,
  mlpDim: 32,
  uniLayers: 1,
  fusionLayers: 1,
  bottlenecks: 2,
  numClasses: 3,
  seed: 1,
};

test('parameter count: the stated formula, checked against a count by hand', () => {
  // E=16, F=32, L=2 per modality. Per layer: 4·256 + 2·16·32 + 9·16 + 32 = 1024 + 1024 + 144 + 32 = 2224.
  // audio: 16·1·16 + 16 + 16 + 13·16 + 2·2224 + 32 = 256 + 32 + 208 + 4448 + 32 = 4976
  // video: 16·3·16 + 16 + 16 + 5·16 + 2·2224 + 32 = 768 + 32 + 80 + 4448 + 32 = 5360
  // bottleneck 2·16 = 32; heads (mean-logits) 2·(16·3 + 3) = 102.     Total 10470.
  const m = new MBT(small);
  assert.is(MBT.expectedParameters(small), 10470);
  assert.is(m.numParameters(), 10470);
  const concat = { ...small, fusion: 'concat' as const };
  const mc = new MBT(concat);
  assert.is(mc.numParameters(), 10470 - 102 + (2 * 16 * 3 + 3));
  assert.is(mc.numParameters(), MBT.expectedParameters(concat));
  const names = m.namedParameters().map(([n]) => n);
  for (const n of [
    'modalities.audio.patch_embed.proj.weight',
    'modalities.audio.cls_token',
    'modalities.video.pos_embed',
    'modalities.video.layers.1.self_attn.in_proj_weight',
    'modalities.video.layers.1.self_attn.out_proj.bias',
    'modalities.audio.layers.0.linear1.weight',
    'modalities.audio.norm.weight',
    'bottleneck',
    'heads.audio.weight',
  ]) {
    assert.ok(names.includes(n), `has ${n}`);
  }
  m.dispose();
  mc.dispose();
});

test(
  'the formula at ViT-B/16 size: ' + 'each stream has exactly timm vit_base_patch16_224 without its head (85,798,656)',
  () => {
    // timm's vit_base_patch16_224 has 86,567,656 parameters, of which the 1000-class head is
    // 768·1000 + 1000 = 769,000: 85,798,656 for patch embedding, CLS, positions, 12 blocks, norm.
    const rgb = { channels: 3, height: 224, width: 224, patch: 16 };
    const cfg: MBTConfig = { modalities: { a: rgb, b: rgb }, ...MBT_VIT_BASE };
    assert.is(MBT.expectedParameters(cfg), 2 * 85_798_656 + 4 * 768);
  },
);

async function finite(t: Tensor): Promise<boolean> {
  return (await t.toArray()).every(Number.isFinite);
}

test(
  'forward + backward: features (B, E) per modality, ' + 'fused logits, finite gradients for every parameter, no leaks',
  async () => {
    const before = liveTensors.count;
    const m = new MBT(small);
    const [a] = randTensor([2, 1, 16, 12], 2);
    const [v] = randTensor([2, 3, 8, 8], 3);
    const out = m.forward({ audio: a, video: v });
    assert.equal(out.features.audio!.shape, [2, 16]);
    assert.equal(out.modalityLogits.video!.shape, [2, 3]);
    assert.equal(out.logits!.shape, [2, 3]);
    const y = tensor(Int32Array.of(0, 2), [2], { dtype: 'int32' });
    const loss = tidy(() =>
      add(
        add(crossEntropy(out.logits!, y), crossEntropy(out.modalityLogits.audio!, y)),
        crossEntropy(out.modalityLogits.video!, y),
      ),
    );
    loss.backward();
    for (const [n, p] of m.namedParameters()) {
      assert.ok(p.grad, `${n} has a gradient`);
      assert.ok(await finite(p.grad!), `${n} gradient is finite`);
    }
    for (const t of [a, v, y, loss, out.logits!, ...Object.values(out.features), ...Object.values(out.modalityLogits)])
      t.dispose();
    m.dispose();
    assert.is(liveTensors.count, before);
  },
);

test('the bottleneck is the only path between modalities', async () => {
  const feats = async (cfg: MBTConfig, seedV: number): Promise<Float32Array> => {
    const m = new MBT(cfg).eval();
    const [a] = randTensor([1, 1, 16, 12], 4);
    const [v] = randTensor([1, 3, 8, 8], seedV);
    const out = m.forward({ audio: a, video: v });
    const r = (await out.features.audio!.toArray()) as Float32Array;
    for (const t of [a, v, out.logits!, ...Object.values(out.features), ...Object.values(out.modalityLogits)])
      t.dispose();
    m.dispose();
    return r;
  };
  const noFusion = { ...small, uniLayers: 2, fusionLayers: 0 };
  assert.equal(
    await feats(noFusion, 5),
    await feats(noFusion, 6),
    'no fusion layer: audio features ignore the video input',
  );
  // One fusion layer: video's update of the bottleneck only reaches the next layer, so still none.
  assert.equal(await feats(small, 5), await feats(small, 6), 'one fusion layer: audio features ignore the video input');
  const twoFusion = { ...small, fusionLayers: 2 };
  const a5 = await feats(twoFusion, 5);
  const a6 = await feats(twoFusion, 6);
  assert.ok(
    a5.some((x, i) => Math.abs(x - a6[i]!) > 1e-4),
    'two fusion layers: audio features depend on the video input',
  );
});

test('three modalities, concat fusion, and a few SGD steps on a fixed batch drive the loss down', async () => {
  const cfg: MBTConfig = {
    ...small,
    modalities: { ...modalities, depth: { channels: 1, height: 8, width: 8, patch: 4 } },
    fusion: 'concat',
    seed: 3,
  };
  const m = new MBT(cfg);
  const [a] = randTensor([4, 1, 16, 12], 7);
  const [v] = randTensor([4, 3, 8, 8], 8);
  const [d] = randTensor([4, 1, 8, 8], 9);
  const y = tensor(Int32Array.of(0, 1, 2, 1), [4], { dtype: 'int32' });
  const opt = new SGD(m.parameters(), { lr: 0.05, momentum: 0.9 });
  const losses: number[] = [];
  for (let s = 0; s < 8; s++) {
    const loss = tidy(() => crossEntropy(m.forward({ audio: a, video: v, depth: d }).logits!, y));
    loss.backward();
    opt.step();
    opt.zeroGrad();
    losses.push(await loss.item());
    loss.dispose();
  }
  assert.ok(losses[7]! < 0.5 * losses[0]!, `losses ${losses.map((l) => l.toFixed(3)).join(' ')}`);
  for (const t of [a, v, d, y]) t.dispose();
  opt.dispose();
  m.dispose();
});

test('bad input: missing or unknown modality, wrong shape, too few modalities, width not divisible by heads', () => {
  const m = new MBT(small);
  const [a] = randTensor([2, 1, 16, 12], 10);
  const [v] = randTensor([2, 3, 8, 8], 11);
  const [bad] = randTensor([2, 3, 8, 9], 12);
  throwsWith(() => m.forward({ audio: a }), "modality 'video' is missing");
  throwsWith(() => m.forward({ audio: a, video: v, text: v }), "unknown modality 'text'");
  throwsWith(() => m.forward({ audio: a, video: bad }), "'video' input [2, 3, 8, 9] is not (batch, 3, 8, 8)");
  throwsWith(() => new MBT({ modalities: { audio: modalities.audio } }), 'at least 2 modalities');
  throwsWith(() => new MBT({ ...small, width: 18, heads: 4 }), 'width 18 is not divisible by 4 heads');
  for (const t of [a, v, bad]) t.dispose();
  m.dispose();
});

test.run();
