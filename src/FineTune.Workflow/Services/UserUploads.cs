using FineTune.Storage;

namespace FineTune.Workflow.Services;

/// <summary>
/// What users upload (datasets, their own weights: the <c>blob:NAME</c> of a job), in a store of its own
/// (<see cref="ArtifactStoreOptions.UploadsContainerName"/>): runs only read it, and nothing uploaded can
/// take the place of the app's artifacts.
/// </summary>
public sealed class UserUploads(IArtifactStore store)
{
    public IArtifactStore Store { get; } = store;
}
