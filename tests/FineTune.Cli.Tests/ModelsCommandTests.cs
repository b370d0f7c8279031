using FineTune.Core.Models;

namespace FineTune.Cli.Tests;

public class ModelsCommandTests
{
    [Fact]
    public async Task ListsEveryFamilyWithHeadInputAndWeights()
    {
        var output = new StringWriter();
        int exit = await FineTuneCommand.RunAsync(["models"], output, new StringWriter());

        Assert.Equal(ExitCodes.Succeeded, exit);
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("family", lines[0]);
        Assert.Equal(ModelRegistry.Families.Count, lines.Length - 1);
        Assert.Contains(lines, l => l.StartsWith("resnet18-cntk ", StringComparison.Ordinal) && l.Contains("BGR 0-255 minus mean image") && l.EndsWith("bundled", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("inception_v3 ", StringComparison.Ordinal) && l.Contains("299x299") && l.Contains("fc"));
        Assert.Contains(lines, l => l.StartsWith("densenet201 ", StringComparison.Ordinal) && l.Contains("classifier ") && l.EndsWith("torchvision: IMAGENET1K_V1", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("resnet50 ", StringComparison.Ordinal) && l.EndsWith("torchvision: IMAGENET1K_V1, IMAGENET1K_V2", StringComparison.Ordinal));
    }

    [Fact]
    public async Task UnknownCommandFails()
    {
        var error = new StringWriter();
        int exit = await FineTuneCommand.RunAsync(["modles"], new StringWriter(), error);
        Assert.NotEqual(ExitCodes.Succeeded, exit);
        Assert.Contains("modles", error.ToString());
    }
}
