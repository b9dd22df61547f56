// Bundled for the browser by test/embedding/browser.test.ts: the example's first-step diagnostics on the
// page's own WebGPU device, exposed as globalThis.runParity(); and Device.fromGPUDevice on a
// destroyed device, as globalThis.fromLostDevice() (the error message, or 'accepted').
import { Device } from '../../../engine/index.ts';
import { ExampleTraining } from '../../../examples/browser/training.ts';

(globalThis as { runParity?: () => Promise<unknown> }).runParity = async () => {
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error('no WebGPU adapter');
  const maxStorageBuffersPerShaderStage = Math.min(10, adapter.limits.maxStorageBuffersPerShaderStage);
  const device = await Device.fromGPUDevice(
    await adapter.requestDevice({ requiredLimits: { maxStorageBuffersPerShaderStage } }),
  );
  const training = new ExampleTraining(device);
  const out = await training.firstStepDiagnostics();
  training.dispose();
  device.destroy();
  return { adapter: device.adapterName, ...out };
};

(globalThis as { fromLostDevice?: () => Promise<string> }).fromLostDevice = async () => {
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error('no WebGPU adapter');
  const gpuDevice = await adapter.requestDevice();
  gpuDevice.destroy();
  try {
    await Device.fromGPUDevice(gpuDevice);
    return 'accepted';
  } catch (e) {
    return (e as Error).message;
  }
};
