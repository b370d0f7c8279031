using Azure.Core;
using Azure.Identity;
using Azure.Storage.Blobs;

namespace FineTune.Storage;

/// <summary>
/// Which artifact store to use, bound from configuration (section "Artifacts"): a blob container reached by
/// connection string (Azurite: <c>UseDevelopmentStorage=true</c>) or by account URL with
/// DefaultAzureCredential (managed identity, no keys), else a local folder.
/// </summary>
public sealed class ArtifactStoreOptions
{
    public const string SectionName = "Artifacts";

    public string? ConnectionString { get; set; }
    public Uri? AccountUrl { get; set; }
    public string ContainerName { get; set; } = "finetune";

    /// <summary>
    /// Where users upload datasets and weights (what <c>blob:NAME</c> in a job names): apart from the app's own
    /// artifacts, so no upload can replace cached weights, checkpoints or published models.
    /// </summary>
    public string UploadsContainerName { get; set; } = "finetune-uploads";
    public string LocalRoot { get; set; } = ".finetune/artifacts";

    /// <summary>The users' uploads without blob storage: a folder of their own, so <c>blob:NAME</c> never reaches the artifacts.</summary>
    public string LocalUploadsRoot { get; set; } = ".finetune/uploads";

    /// <summary>Whether artifacts go to blob storage (a connection string or an account URL is set).</summary>
    public bool UsesBlobStorage => !string.IsNullOrWhiteSpace(ConnectionString) || AccountUrl is not null;

    /// <summary>The blob service: by connection string when one is set, else at the account URL with <paramref name="credential"/>.</summary>
    public BlobServiceClient CreateServiceClient(TokenCredential credential, BlobClientOptions? clientOptions = null) =>
        !string.IsNullOrWhiteSpace(ConnectionString) ? new BlobServiceClient(ConnectionString, clientOptions)
        : AccountUrl is not null ? new BlobServiceClient(AccountUrl, credential, clientOptions)
        : throw new InvalidOperationException($"{SectionName}: neither ConnectionString nor AccountUrl is set");

    /// <summary>The store, for callers without dependency injection (the command line's one-shot commands).</summary>
    public IArtifactStore Create() => Create(UsesBlobStorage ? CreateServiceClient(new DefaultAzureCredential()) : null);

    /// <summary>
    /// The users' uploads on <paramref name="service"/>: the uploads container; without blob storage, the folder
    /// <see cref="LocalUploadsRoot"/> (never <see cref="LocalRoot"/>: a <c>blob:runs/...</c> dataset or weights would read
    /// other runs' artifacts).
    /// </summary>
    public IArtifactStore CreateUploads(BlobServiceClient? service) => UsesBlobStorage
        ? new BlobArtifactStore((service ?? throw new ArgumentNullException(nameof(service))).GetBlobContainerClient(UploadsContainerName))
        : new LocalFolderArtifactStore(LocalUploadsRoot);

    /// <summary>The store on <paramref name="service"/> (null: the local folder).</summary>
    public IArtifactStore Create(BlobServiceClient? service) => UsesBlobStorage
        ? new BlobArtifactStore((service ?? throw new ArgumentNullException(nameof(service))).GetBlobContainerClient(ContainerName))
        : new LocalFolderArtifactStore(LocalRoot);
}
