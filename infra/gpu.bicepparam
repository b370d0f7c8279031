// The GPU option: the Functions app's CUDA image on a serverless T4 profile of Azure Container Apps.
using './main.bicep'

param enableGpu = true
param gpuProfile = 'Consumption-GPU-NC8as-T4'
param containerRegistryName = 'finetuneregistry'
param gpuImage = 'finetuneregistry.azurecr.io/finetune-functions:gpu'
