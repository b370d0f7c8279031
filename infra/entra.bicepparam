// Entra ID sign-in in front of the Functions app: replace the client id with your app registration's
// (az ad app create --display-name finetune --sign-in-audience AzureADMyOrg, with an ID token redirect to
// https://<app>/.auth/login/aad/callback).
using 'main.bicep'

param enableEntraAuth = true
param entraClientId = '00000000-0000-0000-0000-000000000000'
