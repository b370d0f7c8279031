// FineTune Functions in one deployment: storage with identity-based access, the Functions app on a Linux
// Elastic Premium plan (CPU training, long activities), and optionally the same app as a container on
// Azure Container Apps with a serverless GPU workload profile. One user-assigned identity holds exactly
// the data-plane roles the app uses: blob, queue and table data on its storage account. Users upload
// datasets and weights to a container of their own, the only one their role reaches, so no upload can
// replace the app's artifacts (cached weights, checkpoints, published models).

@description('Azure region of every resource.')
param location string = resourceGroup().location

@description('Prefix of resource names: 3-11 lower-case letters or digits.')
@minLength(3)
@maxLength(11)
param namePrefix string = 'finetune'

@description('Elastic Premium plan size for CPU training.')
@allowed(['EP1', 'EP2', 'EP3'])
param planSku string = 'EP2'

@description('Most instances the Premium plan scales out to.')
@minValue(1)
@maxValue(100)
param maximumElasticWorkerCount int = 4

@description('Also deploy the GPU option: the Functions app as a container on Azure Container Apps.')
param enableGpu bool = false

@description('Serverless GPU workload profile of the Container Apps environment.')
@allowed(['Consumption-GPU-NC8as-T4', 'Consumption-GPU-NC24-A100'])
param gpuProfile string = 'Consumption-GPU-NC8as-T4'

@description('The GPU image of the Functions app (built from infra/Dockerfile), e.g. myregistry.azurecr.io/finetune-functions:gpu.')
param gpuImage string = ''

@description('Name of the Azure Container Registry in this resource group holding gpuImage.')
param containerRegistryName string = ''

@description('Object ids of the users or groups who upload datasets and weights: they may write the uploads container and nothing else.')
param uploaderPrincipalIds array = []

@description('Put Microsoft Entra ID sign-in (App Service / Container Apps authentication, "EasyAuth") in front of the apps, besides the function key: browsers sign in, API callers send an Entra ID bearer token for entraClientId.')
param enableEntraAuth bool = false

@description('Application (client) id of the Entra ID app registration that signs users in (enableEntraAuth).')
param entraClientId string = ''

@description('Entra ID tenant of that app registration.')
param entraTenantId string = subscription().tenantId

var suffix = uniqueString(resourceGroup().id, namePrefix)
var storageName = take('${namePrefix}${suffix}', 24)
var artifactsContainer = 'finetune'
var uploadsContainer = 'finetune-uploads'
var jobsContainer = 'finetune-jobs'
var packagesContainer = 'deployments'

// Built-in role definitions: data-plane access only, nothing on the control plane.
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var acrPull = '7f951dda-4ed3-4680-a7ca-43fe172d538d'

// Each app has its own Durable Functions task hub (host.json reads TaskHubName): sharing one, either app
// could take the other's work items, and the GPU app would train where the Premium app was meant to.
var premiumTaskHub = 'FineTune'
var gpuTaskHub = 'FineTuneGpu'
// The Azure Storage provider's queues: one work-item queue (activities) and, by default, four control
// queues (orchestrations), named after the hub in lower case.
var gpuHubQueues = [for queue in ['workitems', 'control-00', 'control-01', 'control-02', 'control-03']: '${toLower(gpuTaskHub)}-${queue}']

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${namePrefix}-identity'
  location: location
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageName
  location: location
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    // The host, Durable Functions and the app reach storage through the identity; no key is handed out.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for name in [artifactsContainer, uploadsContainer, jobsContainer, packagesContainer]: {
  parent: blobService
  name: name
  properties: { publicAccess: 'None' }
}]

resource storageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in [storageBlobDataOwner, storageQueueDataContributor, storageTableDataContributor]: {
  name: guid(storage.id, identity.id, role)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}]

// Uploaders: blob data on the uploads container only, never on the artifacts the runs trust.
resource uploadsRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in uploaderPrincipalIds: {
  name: guid(storage.id, uploadsContainer, principalId, storageBlobDataContributor)
  scope: containers[1]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
  }
}]

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${namePrefix}-logs'
  location: location
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${namePrefix}-insights'
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
  }
}

// Settings shared by the Premium app and the GPU container: identity-based connections only.
var appSettings = [
  { name: 'FUNCTIONS_EXTENSION_VERSION', value: '~4' }
  { name: 'FUNCTIONS_WORKER_RUNTIME', value: 'dotnet-isolated' }
  { name: 'AzureWebJobsStorage__accountName', value: storage.name }
  { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
  { name: 'AzureWebJobsStorage__clientId', value: identity.properties.clientId }
  { name: 'AZURE_CLIENT_ID', value: identity.properties.clientId }
  { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
  { name: 'Artifacts__AccountUrl', value: storage.properties.primaryEndpoints.blob }
  { name: 'Artifacts__ContainerName', value: artifactsContainer }
  { name: 'Artifacts__UploadsContainerName', value: uploadsContainer }
  { name: 'Workflow__WorkDirectory', value: '/tmp/finetune' }
]

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  name: '${namePrefix}-plan'
  location: location
  kind: 'elastic'
  sku: {
    tier: 'ElasticPremium'
    name: planSku
  }
  properties: {
    reserved: true
    maximumElasticWorkerCount: maximumElasticWorkerCount
  }
}

resource functionApp 'Microsoft.Web/sites@2023-12-01' = {
  name: '${namePrefix}-${suffix}'
  location: location
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identity.id
    siteConfig: {
      linuxFxVersion: 'DOTNET-ISOLATED|10.0'
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      alwaysOn: false
      appSettings: concat(appSettings, [
        { name: 'TaskHubName', value: premiumTaskHub }
        // The package comes from blob storage through the identity, so no file share (and no key) is needed.
        { name: 'WEBSITE_RUN_FROM_PACKAGE', value: '${storage.properties.primaryEndpoints.blob}${packagesContainer}/functions.zip' }
        { name: 'WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID', value: identity.id }
      ])
    }
  }
  dependsOn: [storageRoles]
}

// Entra ID sign-in in front of every request (the dashboard's page included); the function key is still needed.
var entraSignIn = {
  unauthenticatedClientAction: 'RedirectToLoginPage'
  redirectToProvider: 'azureactivedirectory'
}
var entraAuth = {
  platform: { enabled: true }
  identityProviders: {
    azureActiveDirectory: {
      enabled: true
      registration: {
        clientId: entraClientId
        openIdIssuer: '${az.environment().authentication.loginEndpoint}${entraTenantId}/v2.0'
      }
      validation: {
        allowedAudiences: [entraClientId, 'api://${entraClientId}']
      }
    }
  }
}

resource functionAppAuth 'Microsoft.Web/sites/config@2023-12-01' = if (enableEntraAuth) {
  parent: functionApp
  name: 'authsettingsV2'
  properties: union(entraAuth, {
    globalValidation: union(entraSignIn, { requireAuthentication: true })
    httpSettings: { requireHttps: true }
  })
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = if (enableGpu) {
  name: containerRegistryName
}

resource registryPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableGpu) {
  name: guid(resourceGroup().id, containerRegistryName, identity.id, acrPull)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPull)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource environment 'Microsoft.App/managedEnvironments@2024-03-01' = if (enableGpu) {
  name: '${namePrefix}-env'
  location: location
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
    workloadProfiles: [
      { name: 'Consumption', workloadProfileType: 'Consumption' }
      { name: 'gpu', workloadProfileType: gpuProfile }
    ]
  }
}

resource gpuApp 'Microsoft.App/containerApps@2025-01-01' = if (enableGpu) {
  name: '${namePrefix}-gpu'
  location: location
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  properties: {
    environmentId: environment.id
    workloadProfileName: 'gpu'
    configuration: {
      ingress: {
        external: true
        targetPort: 80
        allowInsecure: false
      }
      registries: [
        { server: '${containerRegistryName}.azurecr.io', identity: identity.id }
      ]
    }
    template: {
      containers: [
        {
          name: 'functions'
          image: gpuImage
          env: concat(appSettings, [{ name: 'TaskHubName', value: gpuTaskHub }])
          resources: { cpu: 8, memory: '56Gi' }
        }
      ]
      // Scaled on its task hub's queues, not on HTTP: a queue's length counts the messages being processed
      // (invisible until done), so while an activity trains the replica stays, and with no work it goes to zero.
      scale: {
        minReplicas: 0
        maxReplicas: 1
        rules: [for queue in gpuHubQueues: {
          name: queue
          azureQueue: {
            accountName: storage.name
            queueName: queue
            queueLength: 1
            identity: identity.id
          }
        }]
      }
    }
  }
  dependsOn: [storageRoles, registryPull]
}

resource gpuAppAuth 'Microsoft.App/containerApps/authConfigs@2025-01-01' = if (enableGpu && enableEntraAuth) {
  parent: gpuApp
  name: 'current'
  // Container Apps authentication requires sign-in whenever unauthenticated clients are redirected.
  properties: union(entraAuth, { globalValidation: entraSignIn })
}

output functionAppUrl string = 'https://${functionApp.properties.defaultHostName}'
output storageAccountName string = storage.name
output artifactsContainer string = artifactsContainer
output uploadsContainer string = uploadsContainer
output jobsContainer string = jobsContainer
output identityClientId string = identity.properties.clientId
output gpuAppUrl string = enableGpu ? 'https://${gpuApp!.properties.configuration.ingress.fqdn}' : ''
