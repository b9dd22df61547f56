// The README's "Use it in a web page" snippet, verbatim between the markers, typechecked by the
// strict consumer (test/embedding/package.test.ts) so the documentation cannot drift from the types.
declare const grayPixels: Float32Array, colorPixels: Float32Array, labelIds: Int32Array;
// --- README snippet ---
import { Device, MultimodalStep, SGD, crossEntropy, setDevice, tensor, tidy } from 'mmpareto-webgpu';
import { CGEncoder, LateFusionClassifier } from 'mmpareto-webgpu/models';

const adapter = (await navigator.gpu.requestAdapter())!;
const maxStorageBuffersPerShaderStage = Math.min(10, adapter.limits.maxStorageBuffersPerShaderStage);
const gpuDevice = await adapter.requestDevice({ requiredLimits: { maxStorageBuffersPerShaderStage } }); // the app's
setDevice(await Device.fromGPUDevice(gpuDevice)); // the engine borrows it; modules are made on it
const model = new LateFusionClassifier({
  classes: 10,
  encoders: {
    gray: { module: new CGEncoder({ inChannels: 1 }), features: 512 },
    color: { module: new CGEncoder({ inChannels: 3 }), features: 512 },
  },
});
const step = new MultimodalStep({
  method: 'mmpareto',
  encoders: model.encoderGroups(),
  optimizer: new SGD(model.parameters(), { lr: 0.01, momentum: 0.9 }),
});

const gray = tensor(grayPixels, [64, 1, 28, 28]),
  color = tensor(colorPixels, [64, 3, 28, 28]);
const labels = tensor(labelIds, [64], { dtype: 'int32' }); // or Tensor.fromGPUBuffer(yourBuffer, shape)
const losses = tidy(() => {
  const z = model.logits({ gray, color });
  return {
    mm: crossEntropy(z.mm!, labels),
    gray: crossEntropy(z.gray!, labels),
    color: crossEntropy(z.color!, labels),
  };
});
step.step(losses); // per-loss gradients, MMPareto per encoder, SGD: one submit, no readback
console.log(await losses.mm.item()); // the one readback
// --- end ---
