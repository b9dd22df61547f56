// The browser entry a web app bundles: the whole engine, the modules, the models and the data
// generator, re-exported so that nothing is tree-shaken (the bundle size the README reports).
export * from 'mmpareto-webgpu';
export * as nn from 'mmpareto-webgpu/nn';
export * as models from 'mmpareto-webgpu/models';
export * as data from 'mmpareto-webgpu/data';
