// The package's entry point in Node (the "node" condition of package.json's exports): the whole
// engine, with Dawn — the npm package `webgpu` — as the default GPU of Device.create and init().
// Browser bundles resolve the package to engine/index.ts instead and never see this file, so the
// engine itself imports no Node module. Programs in this repository (CLI, tests, benches) import
// this file once for that registration.
import { setDefaultGPU, type GPUProvider } from '../engine/device.ts';
import { EngineError } from '../engine/errors.ts';

export * from '../engine/index.ts';

/** Dawn's Node binding, loaded on first use; `timestamps` turns off Dawn's 65536 ns rounding. */
export const dawnGPU: GPUProvider = async ({ timestamps }) => {
  let dawn: typeof import('webgpu');
  try {
    dawn = await import('webgpu');
  } catch (e) {
    throw new EngineError(
      `The 'webgpu' package (Dawn for Node) could not be loaded: ${(e as Error).message}. Reinstall it (npm ` +
        `install webgpu), or pass Device.create({ gpu }).`,
    );
  }
  // Dawn's constants (GPUBufferUsage, ...) as globals, as in a browser; never over the host's own.
  for (const [k, v] of Object.entries(dawn.globals)) {
    if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  }
  return dawn.create(timestamps ? ['disable-dawn-features=timestamp_quantization'] : []);
};

setDefaultGPU(dawnGPU);
