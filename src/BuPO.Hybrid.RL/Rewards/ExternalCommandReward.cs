using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace BuPO.Hybrid.RL.Rewards;

/// <summary>
/// A reward computed by a user command, started once (through <c>/bin/sh -c</c>, or <c>cmd /c</c> on Windows) and kept
/// running. For each sample it gets one JSON line on stdin, <c>{"id":..., "prompt":..., "response":..., "answer":...}</c>
/// (answer null where the prompt has none), and must print one line <c>{"reward": x}</c> on stdout, in order, flushing
/// after each (in Python: <c>print(..., flush=True)</c>; in awk: <c>fflush()</c>, and mawk, Debian's default awk, also
/// needs <c>-W interactive</c> or it waits for a full input buffer). Its logs belong on stderr. A command that
/// exits, prints anything else, or stays silent past <see cref="Timeout"/> fails the batch with a one-line
/// <see cref="BupoException"/> (with the command's last stderr line); the next batch starts it afresh.
/// </summary>
public sealed class ExternalCommandReward : IRewardFunction, IDisposable
{
    private const int StderrLinesKept = 20;
    private readonly Queue<string> _stderr = new();
    private Process? _process;

    /// <param name="command">The shell command line.</param>
    /// <param name="timeout">How long one batch may take (default 5 minutes).</param>
    /// <param name="workingDirectory">Where the command runs (default: the current folder).</param>
    public ExternalCommandReward(string command, TimeSpan? timeout = null, string? workingDirectory = null)
    {
        if (string.IsNullOrWhiteSpace(command)) throw new BupoException("--reward-command: empty command");
        Command = command;
        Timeout = timeout ?? TimeSpan.FromMinutes(5);
        WorkingDirectory = workingDirectory;
    }

    public string Command { get; }
    public TimeSpan Timeout { get; }
    public string? WorkingDirectory { get; }
    public string Name => "command";

    public double[] Score(IReadOnlyList<RewardSample> batch)
    {
        if (batch.Count == 0) return [];
        var process = EnsureStarted();
        var deadline = Stopwatch.StartNew();
        var writer = Task.Run(() => WriteBatch(process.StandardInput, batch));
        var rewards = new double[batch.Count];
        try
        {
            for (var i = 0; i < batch.Count; i++)
            {
                var read = process.StandardOutput.ReadLineAsync();
                var left = Timeout - deadline.Elapsed;
                if (left <= TimeSpan.Zero || !read.Wait(left))
                    throw Fail($"gave {i} of {batch.Count} rewards within {Timeout.TotalSeconds:0.#} s");
                var line = read.Result;
                if (line == null)
                {
                    process.WaitForExit(2000);
                    var code = process.HasExited ? $"exited with code {process.ExitCode}" : "closed its output";
                    throw Fail($"{code} after {i} of {batch.Count} rewards");
                }
                rewards[i] = ParseReward(line, i, batch.Count);
            }
            var writeLeft = Timeout - deadline.Elapsed;
            if (writeLeft <= TimeSpan.Zero || !writer.Wait(writeLeft))
                throw Fail($"answered all {batch.Count} samples but did not read them all within {Timeout.TotalSeconds:0.#} s");
        }
        catch (BupoException)
        {
            Stop();
            throw;
        }
        catch (AggregateException e) when (e.InnerException is IOException)
        {
            Stop();
            throw Fail($"pipe failed: {e.InnerException.Message}");
        }
        return rewards;
    }

    private static void WriteBatch(StreamWriter stdin, IReadOnlyList<RewardSample> batch)
    {
        try
        {
            var buffer = new MemoryStream();
            foreach (var sample in batch)
            {
                buffer.SetLength(0);
                using (var json = new Utf8JsonWriter(buffer))
                {
                    json.WriteStartObject();
                    json.WriteString("id", sample.Prompt.Id);
                    json.WriteString("prompt", sample.Prompt.Problem);
                    json.WriteString("response", sample.Response);
                    if (sample.Prompt.Answer is { } answer) json.WriteString("answer", answer);
                    else json.WriteNull("answer");
                    json.WriteEndObject();
                }
                stdin.Write(Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length));
                stdin.Write('\n');
            }
            stdin.Flush();
        }
        catch (IOException)
        {
            // The command exited or closed stdin; the reader reports it with the exit code.
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private double ParseReward(string line, int index, int count)
    {
        var shown = line.Length > 80 ? line[..80] + "..." : line;
        try
        {
            using var doc = JsonDocument.Parse(line);
            if (doc.RootElement.ValueKind == JsonValueKind.Object
                && doc.RootElement.TryGetProperty("reward", out var r)
                && r.ValueKind == JsonValueKind.Number)
            {
                var value = r.GetDouble();
                if (double.IsFinite(value)) return value;
            }
        }
        catch (JsonException)
        {
        }
        throw Fail($"output line {index + 1} of {count} is not {{\"reward\": <finite number>}} (print logs to stderr): {shown}");
    }

    private Process EnsureStarted()
    {
        if (_process is { HasExited: false }) return _process;
        if (_process != null)
        {
            var code = _process.ExitCode;
            Stop();
            throw Fail($"exited with code {code} between batches");
        }
        var info = OperatingSystem.IsWindows()
            ? new ProcessStartInfo("cmd.exe") { ArgumentList = { "/c", Command } }
            : new ProcessStartInfo("/bin/sh") { ArgumentList = { "-c", Command } };
        info.RedirectStandardInput = info.RedirectStandardOutput = info.RedirectStandardError = true;
        info.UseShellExecute = false;
        info.StandardInputEncoding = new UTF8Encoding(false);
        info.StandardOutputEncoding = info.StandardErrorEncoding = Encoding.UTF8;
        if (WorkingDirectory != null) info.WorkingDirectory = WorkingDirectory;
        lock (_stderr) _stderr.Clear();
        var process = new Process { StartInfo = info };
        process.ErrorDataReceived += (_, e) =>
        {
            if (string.IsNullOrWhiteSpace(e.Data)) return;
            lock (_stderr)
            {
                _stderr.Enqueue(e.Data);
                while (_stderr.Count > StderrLinesKept) _stderr.Dequeue();
            }
        };
        try
        {
            process.Start();
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            process.Dispose();
            throw new BupoException($"reward command '{Command}': could not start the shell: {e.Message}");
        }
        process.BeginErrorReadLine();
        process.StandardInput.NewLine = "\n";
        _process = process;
        return process;
    }

    private BupoException Fail(string what)
    {
        // Give the stderr reader a moment to catch the command's last words.
        if (_process is { } p)
        {
            try
            {
                // After an exit, the parameterless WaitForExit also drains the asynchronous stderr reader (bounded here,
                // in case a child of the command still holds stderr open).
                if (p.WaitForExit(300)) Task.Run(() => p.WaitForExit()).Wait(1000);
            }
            catch (InvalidOperationException) { }
        }
        string? last;
        lock (_stderr) last = _stderr.LastOrDefault();
        var tail = last == null ? "" : $"; its stderr: {(last.Length > 200 ? last[..200] + "..." : last)}";
        return new BupoException($"reward command '{Command}' {what}{tail}");
    }

    private void Stop()
    {
        var p = _process;
        _process = null;
        if (p == null) return;
        try
        {
            if (!p.HasExited) p.Kill(entireProcessTree: true);
            p.WaitForExit(2000);
        }
        catch (InvalidOperationException) { }
        catch (System.ComponentModel.Win32Exception) { }
        p.Dispose();
    }

    /// <summary>Closes the command's stdin, gives it two seconds to exit, then kills it.</summary>
    public void Dispose()
    {
        var p = _process;
        if (p == null) return;
        try
        {
            if (!p.HasExited)
            {
                p.StandardInput.Close();
                p.WaitForExit(2000);
            }
        }
        catch (IOException) { }
        catch (InvalidOperationException) { }
        Stop();
    }
}
