using System.CommandLine;
using FineTune.Workflow.Jobs;

namespace FineTune.Cli;

/// <summary><c>finetune schema</c>: the job files' JSON Schema, for editors (<c>"$schema": "./job.schema.json"</c>).</summary>
internal static class SchemaCommand
{
    public static Command Create(TextWriter output)
    {
        var command = new Command("schema", $"Print the JSON Schema of job files (save it as {JobSchema.FileName} and name it in a job's \"$schema\").");
        command.SetAction(_ =>
        {
            output.Write(JobSchema.Text());
            return ExitCodes.Succeeded;
        });
        return command;
    }
}
