using FineTune.Core.Models;

namespace FineTune.Cli.Tests;

public sealed class ChoiceOptionsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cli-choices-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task TrainHelpListsTheChoicesFromTheirTables()
    {
        var output = new StringWriter();
        Assert.Equal(ExitCodes.Succeeded, await FineTuneCommand.RunAsync(["train", "--help"], output, new StringWriter()));
        string help = string.Join(' ', output.ToString().Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains(string.Join(' ', ResizeModes.Choices.Described.Split(' ', StringSplitOptions.RemoveEmptyEntries)), help);
        Assert.Contains("last:N (the last N stages too)", help);
    }

    [Fact]
    public async Task PredictRefusesAModelCardWithAnUnknownResize()
    {
        File.WriteAllText(Path.Combine(_dir, "model-card.json"),
            """{ "version": 1, "model": "resnet18-cntk", "classes": ["a", "b"], "preprocessing": { "resize": "stretch" } }""");
        File.WriteAllText(Path.Combine(_dir, "model.safetensors"), "");
        var error = new StringWriter();
        Assert.Equal(ExitCodes.BadInput, await FineTuneCommand.RunAsync(["predict", "--model", _dir, "x.png"], new StringWriter(), error));
        Assert.Contains("model-card.json: preprocessing.resize: must be crop or pad", error.ToString());
    }
}
