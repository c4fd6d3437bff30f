namespace BuPO.Hybrid;

/// <summary>
/// An error caused by the user's input (a file, an option, a dataset line). Its message is one line that
/// names what is wrong; the CLI prints it as is and exits non-zero, without a stack trace.
/// </summary>
public class BupoException : Exception
{
    public BupoException(string message) : base(message) { }
    public BupoException(string message, Exception inner) : base(message, inner) { }
}
