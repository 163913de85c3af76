#include "store/dockerfile.h"

#include <nlohmann/json.hpp>

#include "base/util.h"

namespace brig::store {
namespace {

Error line_error(std::string_view name, int line, const std::string& what) {
  return Error::make(errc::invalid_argument, std::string(name) + ":" + std::to_string(line) + ": " + what);
}

// Splits on whitespace, honouring "double" and 'single' quotes (as Docker does for ENV/LABEL).
Result<std::vector<std::string>> split_words(std::string_view s) {
  std::vector<std::string> out;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (quote) {
      if (c == quote) quote = 0;
      else if (c == '\\' && quote == '"' && i + 1 < s.size()) cur += s[++i];
      else cur += c;
    } else if (c == '"' || c == '\'') {
      quote = c;
      in_word = true;
    } else if (c == '\\' && i + 1 < s.size()) {
      cur += s[++i];
      in_word = true;
    } else if (std::isspace(static_cast<unsigned char>(c))) {
      if (in_word) out.push_back(std::move(cur));
      cur.clear();
      in_word = false;
    } else {
      cur += c;
      in_word = true;
    }
  }
  if (quote) return Error::make(errc::invalid_argument, "unterminated quote");
  if (in_word) out.push_back(std::move(cur));
  return out;
}

Result<std::vector<std::pair<std::string, std::string>>> parse_pairs(std::string_view rest, bool allow_legacy) {
  BRIG_TRY_ASSIGN(words, split_words(rest));
  if (words.empty()) return Error::make(errc::invalid_argument, "needs KEY=VALUE");
  std::vector<std::pair<std::string, std::string>> out;
  if (allow_legacy && words[0].find('=') == std::string::npos) {
    // Legacy "ENV KEY value with spaces".
    auto sp = rest.find_first_of(" \t");
    std::string key(trim(rest.substr(0, sp)));
    std::string value = sp == std::string_view::npos ? "" : std::string(trim(rest.substr(sp)));
    out.emplace_back(key, value);
    return out;
  }
  for (auto& w : words) {
    auto eq = w.find('=');
    if (eq == 0 || eq == std::string::npos) return Error::make(errc::invalid_argument, "expected KEY=VALUE, got '" + w + "'");
    out.emplace_back(w.substr(0, eq), w.substr(eq + 1));
  }
  return out;
}

bool valid_name(const std::string& k) {
  if (k.empty() || k.size() > 256) return false;
  for (char c : k)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) return false;
  return true;
}

struct RawLine {
  int line;
  std::string text;
};

// Joins continuation lines and drops comments; "# brig:" directives come back separately.
std::vector<RawLine> logical_lines(std::string_view text, std::vector<RawLine>* directives) {
  std::vector<RawLine> out;
  std::string cur;
  int start = 0;
  int lineno = 0;
  for (auto& raw : split(text, '\n')) {
    ++lineno;
    std::string_view line = raw;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::string_view t = trim(line);
    if (t.starts_with("#")) {
      if (cur.empty() && t.starts_with("# brig:")) directives->push_back({lineno, std::string(trim(t.substr(7)))});
      continue;  // comments are dropped, even inside a continuation (as Docker does)
    }
    if (cur.empty()) {
      if (t.empty()) continue;
      start = lineno;
    }
    if (!t.empty() && t.back() == '\\') {
      cur += std::string(t.substr(0, t.size() - 1));
      cur += ' ';
      continue;
    }
    cur += std::string(t);
    out.push_back({start, cur});
    cur.clear();
  }
  if (!cur.empty()) out.push_back({start, cur});
  return out;
}

}  // namespace

std::string expand_vars(std::string_view s, const std::map<std::string, std::string>& vars) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '$' || i + 1 >= s.size()) {
      out += s[i];
      continue;
    }
    size_t j = i + 1;
    std::string name;
    if (s[j] == '{') {
      size_t close = s.find('}', j);
      if (close == std::string_view::npos) {
        out += s[i];
        continue;
      }
      name = std::string(s.substr(j + 1, close - j - 1));
      i = close;
    } else {
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) name += s[j++];
      if (name.empty()) {
        out += s[i];
        continue;
      }
      i = j - 1;
    }
    if (auto it = vars.find(name); it != vars.end()) out += it->second;
  }
  return out;
}

Result<Dockerfile> parse_dockerfile(std::string_view text, std::string_view name) {
  if (text.size() > (1u << 20)) return Error::make(errc::invalid_argument, std::string(name) + ": larger than 1 MiB");
  Dockerfile df;
  std::vector<RawLine> directives;
  auto lines = logical_lines(text, &directives);
  for (auto& d : directives) {
    auto sp = d.text.find(' ');
    std::string key = d.text.substr(0, sp);
    std::string value = sp == std::string::npos ? "" : std::string(trim(d.text.substr(sp)));
    if (value.empty()) return line_error(name, d.line, "brig:" + key + " needs a value");
    if (key == "start") df.start_cmd = value;
    else if (key == "ready") df.ready_cmd = value;
    else if (key == "kernels") {
      for (auto& k : split(value, ' ')) {
        if (k.empty()) continue;
        if (k != "python" && k != "javascript" && k != "typescript" && k != "bash" && k != "r")
          return line_error(name, d.line, "brig:kernels: unknown language '" + k + "' (python, javascript, typescript, bash, r)");
        df.kernels.push_back(k);
      }
    }
    else if (key == "cpus") {
      try {
        df.cpus = std::stod(value);
      } catch (...) {
        return line_error(name, d.line, "brig:cpus wants a number");
      }
      if (df.cpus <= 0 || df.cpus > 256) return line_error(name, d.line, "brig:cpus must be in (0, 256]");
    } else if (key == "memory") {
      auto m = parse_size(value);
      if (!m) return line_error(name, d.line, m.error().message());
      df.memory_bytes = *m;
    } else if (key == "disk") {
      auto m = parse_size(value);
      if (!m) return line_error(name, d.line, m.error().message());
      df.disk_bytes = *m;
    } else {
      return line_error(name, d.line, "unknown directive 'brig:" + key + "' (known: start, ready, kernels, cpus, memory, disk)");
    }
  }

  for (auto& l : lines) {
    auto sp = l.text.find_first_of(" \t");
    std::string keyword = l.text.substr(0, sp);
    for (auto& c : keyword) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    std::string rest = sp == std::string::npos ? "" : std::string(trim(std::string_view(l.text).substr(sp)));
    Instruction ins;
    ins.line = l.line;
    ins.text = keyword + " " + rest;
    auto err = [&](const std::string& what) { return line_error(name, l.line, keyword + ": " + what); };
    if (df.steps.empty() && keyword != "FROM" && keyword != "ARG")
      return line_error(name, l.line, "the first instruction must be FROM");
    if (keyword == "FROM") {
      if (!df.steps.empty()) return err("only one FROM is supported (no multi-stage builds)");
      BRIG_TRY_ASSIGN(words, split_words(rest));
      if (words.size() != 1) return err("expected one image (no --platform, no AS)");
      ins.op = Op::from;
      ins.args = {words[0]};
    } else if (keyword == "RUN") {
      if (rest.empty()) return err("needs a command");
      ins.op = Op::run;
      if (rest.starts_with("[")) {
        auto j = nlohmann::json::parse(rest, nullptr, false);
        if (!j.is_array() || j.empty()) return err("exec form must be a JSON array of strings");
        for (auto& a : j) {
          if (!a.is_string()) return err("exec form must be a JSON array of strings");
          ins.args.push_back(a.get<std::string>());
        }
        ins.exec_form = true;
      } else {
        if (rest.starts_with("--")) return err("RUN flags (--mount, --network) are not supported");
        ins.args = {rest};
      }
    } else if (keyword == "ENV" || keyword == "LABEL") {
      auto pairs = parse_pairs(rest, keyword == "ENV");
      if (!pairs) return err(pairs.error().message());
      for (auto& [k, v] : *pairs)
        if (keyword == "ENV" && !valid_name(k)) return err("invalid variable name '" + k + "'");
      ins.op = keyword == "ENV" ? Op::env : Op::label;
      ins.pairs = std::move(*pairs);
    } else if (keyword == "ARG") {
      BRIG_TRY_ASSIGN(words, split_words(rest));
      if (words.size() != 1) return err("expected NAME or NAME=default");
      auto eq = words[0].find('=');
      std::string k = words[0].substr(0, eq);
      if (!valid_name(k)) return err("invalid argument name '" + k + "'");
      ins.op = Op::arg;
      ins.pairs = {{k, eq == std::string::npos ? "" : words[0].substr(eq + 1)}};
    } else if (keyword == "WORKDIR") {
      if (rest.empty()) return err("needs a directory");
      ins.op = Op::workdir;
      ins.args = {rest};
    } else if (keyword == "USER") {
      if (rest.empty()) return err("needs a user");
      std::string u = rest.substr(0, rest.find(':'));
      if (u == "0") u = "root";
      if (u == "1000") u = "user";
      if (u != "user" && u != "root")
        return err("brig templates run as 'user' (uid 1000) or 'root'; got '" + rest + "'");
      ins.op = Op::user;
      ins.args = {u};
    } else if (keyword == "COPY" || keyword == "ADD") {
      BRIG_TRY_ASSIGN(words, split_words(rest));
      std::vector<std::string> paths;
      for (auto& w : words) {
        if (w.starts_with("--chmod=")) {
          try {
            ins.chmod = static_cast<uint32_t>(std::stoul(w.substr(8), nullptr, 8)) & 07777;
          } catch (...) {
            return err("--chmod wants an octal mode");
          }
        } else if (w.starts_with("--chown=")) {
          std::string who = w.substr(8, w.find(':') == std::string::npos ? std::string::npos : w.find(':') - 8);
          if (who == "1000") who = "user";
          if (who == "0") who = "root";
          if (who != "user" && who != "root") return err("--chown must be user or root");
          ins.chown = who;
        } else if (w.starts_with("--")) {
          return err("flag '" + w + "' is not supported");
        } else {
          paths.push_back(w);
        }
      }
      if (paths.size() < 2) return err("expected <src>... <dest>");
      for (size_t i = 0; i + 1 < paths.size(); ++i) {
        auto& p = paths[i];
        if (p.find("://") != std::string::npos) return err("URLs are not supported; download in a RUN step");
        if (p.starts_with("/") || p == ".." || p.starts_with("../") || p.find("/../") != std::string::npos)
          return err("source '" + p + "' must stay inside the build context");
      }
      ins.op = Op::copy;
      ins.args = std::move(paths);
    } else if (keyword == "EXPOSE") {
      continue;  // ports are always reachable through brig's proxy; nothing to do
    } else {
      return err("not supported by brig templates (supported: FROM RUN ENV ARG WORKDIR USER COPY ADD LABEL EXPOSE)");
    }
    df.steps.push_back(std::move(ins));
  }
  if (df.steps.empty() || df.steps[0].op != Op::from) return line_error(name, 1, "no FROM instruction");
  return df;
}

}  // namespace brig::store
