"""A Jupyter kernel for bash cells, run by brig's kernel host inside a sandbox.

One interactive bash per kernel, on a pseudo-terminal (pexpect), so variables, functions and
the working directory persist between cells. A cell is written to a file and sourced, and the
prompt carries the exit status: the end of a cell is the prompt coming back. An interrupt
(SIGINT to this process) becomes Ctrl-C on the terminal, which stops the running command and
leaves the shell alive.

Debian packages only: python3-ipykernel and python3-pexpect (a dependency of IPython).
"""

import os
import re
import secrets
import tempfile

import pexpect
from ipykernel.kernelapp import IPKernelApp
from ipykernel.kernelbase import Kernel


class BashKernel(Kernel):
    implementation = "brig-bash"
    implementation_version = "1.0"
    language = "bash"
    language_version = "5"
    language_info = {"name": "bash", "mimetype": "text/x-sh", "file_extension": ".sh"}
    banner = "bash (brig)"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._cells = tempfile.mkdtemp(prefix=".brig-bash-")
        self._start()

    def _start(self):
        token = secrets.token_hex(8)
        self._prompt = re.compile(r"\[brig-%s:(\d+)\]" % token)
        env = dict(os.environ, PS1="[brig-%s:$?]" % token, PS2="", PROMPT_COMMAND="", TERM="dumb")
        self._bash = pexpect.spawn(
            "bash", ["--norc", "--noprofile", "--noediting", "-i"], env=env, echo=False,
            encoding="utf-8", codec_errors="replace", timeout=None)
        self._bash.setwinsize(24, 500)
        self._bash.expect(self._prompt)

    def _send(self, name, text):
        if text:
            self.send_response(self.iopub_socket, "stream", {"name": name, "text": text})

    def do_execute(self, code, silent, store_history=True, user_expressions=None, allow_stdin=False,
                   **kwargs):
        if not code.strip():
            return {"status": "ok", "execution_count": self.execution_count, "payload": [],
                    "user_expressions": {}}
        path = os.path.join(self._cells, "cell.sh")
        with open(path, "w") as f:
            f.write(code if code.endswith("\n") else code + "\n")
        self._bash.sendline(". %s" % path)
        status = 0
        interrupted = False
        while True:
            try:
                i = self._bash.expect([self._prompt, "\r\n", pexpect.EOF])
            except KeyboardInterrupt:
                self._bash.sendintr()
                interrupted = True
                continue
            if i == 1:
                if not silent:
                    self._send("stdout", self._bash.before + "\n")
                continue
            if not silent:
                self._send("stdout", self._bash.before)
            if i == 2:
                self._send("stderr", "bash exited; a new shell was started (its state is lost)\n")
                self._start()
                status = 1
            else:
                status = int(self._bash.match.group(1))
            break
        if interrupted:
            content = {"ename": "KeyboardInterrupt", "evalue": "interrupted", "traceback": []}
        elif status != 0:
            content = {"ename": "ExitCode", "evalue": str(status),
                       "traceback": ["the cell's last command exited with status %d" % status]}
        else:
            return {"status": "ok", "execution_count": self.execution_count, "payload": [],
                    "user_expressions": {}}
        if not silent:
            self.send_response(self.iopub_socket, "error", content)
        content.update({"status": "error", "execution_count": self.execution_count})
        return content


if __name__ == "__main__":
    IPKernelApp.launch_instance(kernel_class=BashKernel)
