// The set-up scripts: `make run` builds only the program, `make test` the rest and the
// tests' own packages, `make install` honours PREFIX and DESTDIR, and tests/js/install.sh
// fails loudly when the npm references are required but cannot be installed.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "test_support.h"

namespace cq {
namespace {

test::CommandResult shell(const std::string& command) { return test::run_shell(command); }

// What `make -n TARGET` would run (nothing is run), in a copy-free dry run of the Makefile.
std::string dry_run(const std::string& arguments) {
  const auto result = shell("make --no-print-directory -n -C '" + test::source_dir().string() + "' " + arguments);
  EXPECT_EQ(result.exit_code, 0) << result.output;
  return result.output;
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(Setup, MakeRunBuildsOnlyTheProgram) {
  const std::string run = dry_run("run BUILD=build-dry JOBS=1");
  EXPECT_TRUE(has(run, "install-deps.sh cli")) << run;
  EXPECT_FALSE(has(run, "install-deps.sh test")) << run;
  EXPECT_TRUE(has(run, "cmake --build build-dry -j 1 --target cq\n")) << run;
  EXPECT_TRUE(has(run, "./build-dry/cq demo")) << run;
  EXPECT_FALSE(has(run, "ctest")) << run;
  EXPECT_FALSE(has(run, "tests/js/install.sh")) << run;
}

TEST(Setup, MakeTestBuildsEverythingAndInstallsTheTestPackages) {
  const std::string test = dry_run("test BUILD=build-dry JOBS=1");
  EXPECT_TRUE(has(test, "install-deps.sh test")) << test;
  EXPECT_TRUE(has(test, "cmake --build build-dry -j 1\n")) << test;
  EXPECT_TRUE(has(test, "tests/js/install.sh build-dry/js")) << test;
  EXPECT_TRUE(has(test, "ctest")) << test;
}

TEST(Setup, MakeInstallHonoursPrefixAndDestdir) {
  EXPECT_TRUE(has(dry_run("install BUILD=build-dry"), "install -m 755 build-dry/cq \"/usr/local/bin/cq\""));
  const std::string staged = dry_run("install BUILD=build-dry PREFIX=/opt/cq DESTDIR=/tmp/stage");
  EXPECT_TRUE(has(staged, "install -d \"/tmp/stage/opt/cq/bin\"")) << staged;
  EXPECT_TRUE(has(staged, "install -m 755 build-dry/cq \"/tmp/stage/opt/cq/bin/cq\"")) << staged;
  EXPECT_FALSE(has(staged, "install-deps.sh test")) << staged;
}

TEST(Setup, DepsScriptSeparatesTheProgramFromTheTests) {
  const std::string script = (test::source_dir() / "scripts/install-deps.sh").string();
  const auto unknown = shell("bash '" + script + "' everything");
  EXPECT_EQ(unknown.exit_code, 2) << unknown.output;
  EXPECT_TRUE(has(unknown.output, "unknown set 'everything'")) << unknown.output;
}

// npm that cannot reach its registry: a skip normally, an error under CQ_REQUIRE_SHARED=1.
TEST(Setup, JsReferencesFailLoudlyWhenRequired) {
  const auto dir = test::scratch_dir("setup-js");
  std::filesystem::create_directories(dir / "bin");
  {
    std::ofstream npm(dir / "bin" / "npm");
    npm << "#!/bin/sh\necho 'npm ERR! network request failed' >&2\nexit 1\n";
  }
  std::filesystem::permissions(dir / "bin" / "npm", std::filesystem::perms::owner_all);
  const std::string install = "bash '" + (test::source_dir() / "tests/js/install.sh").string() + "' '" + (dir / "js").string() + "'";
  const std::string path = "PATH='" + (dir / "bin").string() + "':\"$PATH\" ";

  const auto required = shell("env CQ_REQUIRE_SHARED=1 " + path + install);
  EXPECT_EQ(required.exit_code, 1) << required.output;
  EXPECT_TRUE(has(required.output, "tests/js/install.sh: error: npm install failed")) << required.output;

  const auto optional = shell("env -u CQ_REQUIRE_SHARED " + path + install);
  EXPECT_EQ(optional.exit_code, 0) << optional.output;
  EXPECT_TRUE(has(optional.output, "tokenizer reference tests will skip")) << optional.output;
}

}  // namespace
}  // namespace cq
