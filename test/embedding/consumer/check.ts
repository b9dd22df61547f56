// A strict TypeScript consumer: typechecked with `tsc --noEmit` against the shipped .d.ts files
// (skipLibCheck off, no @types packages listed: the WebGPU types come with the package).
import {
  Device,
  MultimodalStep,
  SGD,
  Tensor,
  crossEntropy,
  gradcheck,
  tensor,
  tidy,
  type GradcheckResult,
  type Shape,
} from 'mmpareto-webgpu';
import { Conv2d, Linear, type Module } from 'mmpareto-webgpu/nn';
import { CGEncoder, LateFusionClassifier, type TrainableModel } from 'mmpareto-webgpu/models';
import { syntheticAV, type SyntheticAV } from 'mmpareto-webgpu/data';

export async function oneStep(app: GPUDevice, buffer: GPUBuffer): Promise<number> {
  const device: Device = await Device.fromGPUDevice(app);
  const shape: Shape = [2, 3];
  const w: Tensor = Tensor.fromGPUBuffer(buffer, shape, { device, requiresGrad: true });
  const out: GPUBuffer = w.gpuBuffer();
  const bytes: number = w.byteLength + out.size;
  const model: TrainableModel = new LateFusionClassifier({
    encoders: {
      gray: { module: new CGEncoder({ inChannels: 1 }), features: 512 },
      color: { module: new CGEncoder({ inChannels: 3 }), features: 512 },
    },
    classes: 10,
  });
  const opt = new SGD(model.parameters(), { lr: 0.01 });
  const step = new MultimodalStep({ method: 'mmpareto', encoders: model.encoderGroups(), optimizer: opt });
  const data: SyntheticAV = syntheticAV({ n: 4, seed: 0 });
  const x = tensor(data.audio, [4, 1, 16, 16], { device });
  const y = tensor(data.labels, [4], { dtype: 'int32', device });
  const losses = tidy(() => {
    const z = model.logits({ gray: x, color: x });
    const mm: Tensor | undefined = z.mm; // noUncheckedIndexedAccess: a record lookup may miss
    return { mm: crossEntropy(mm!, y), gray: crossEntropy(z.gray!, y), color: crossEntropy(z.color!, y) };
  });
  step.step(losses);
  const r: GradcheckResult = await gradcheck(
    (a) => new Linear(3, 2).forward(a),
    [tensor([1, 2, 3], [1, 3], { device })],
  );
  const conv: Module = new Conv2d(1, 2, 3);
  // @ts-expect-error — shapes are numbers: the shipped types are real, not `any`
  tensor([1], ['1']);
  // @ts-expect-error — an unknown integrator method
  new MultimodalStep({ method: 'best', encoders: {}, optimizer: opt });
  // @ts-expect-error — fromGPUDevice resolves to a Device, it is not one
  const notYet: Device = Device.fromGPUDevice(app);
  return bytes + (r.ok ? 1 : 0) + conv.parameters().length + (notYet ? 0 : 1) + (await losses.mm.item());
}
