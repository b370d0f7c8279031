using FineTune.Core.Models;
using FineTune.Storage;
using FineTune.Workflow.Services;

namespace FineTune.Workflow.Tests;

/// <summary>The published README names model.onnx exactly when the folder holds one (PublishedFolderTests runs both scripts).</summary>
public sealed class HubFilesTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TheReadmeListsModelOnnxOnlyWhenItIsPublished(bool onnx)
    {
        var card = new ModelCard
        {
            JobId = "job",
            Model = "resnet18",
            Classes = ["cats", "dogs"],
            Preprocessing = ModelRegistry.Get("resnet18").Preprocessing,
        };
        string readme = System.Text.Encoding.UTF8.GetString(HubFiles.Readme(card, onnx));
        Assert.Equal(onnx, readme.Contains(RunLayout.OnnxFile, StringComparison.Ordinal));
        Assert.Equal(onnx, readme.Contains("## Use it with ONNX Runtime", StringComparison.Ordinal));
    }
}
