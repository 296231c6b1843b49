// dovecot-keywords: which IMAP keyword each lowercase letter after ":2,"
// in a Maildir file name stands for, per mailbox (shared/MAILDIR.md §5).
// Pure functions over bytes; reading and replacing the file (under the
// uidlist lock) belong to the caller.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/status.h"

namespace mailfs::maildir {

// Letters 'a'..'z': the most keywords a file name can carry. Dovecot keeps
// any more only in its index; mailfs refuses them (KeywordTable::Assign).
inline constexpr size_t kMaxMaildirKeywords = 26;

// How many problems Parse lists; beyond that it adds one last entry that
// counts the rest.
inline constexpr size_t kMaxKeywordsProblems = 100;

// A line the parser did not use. line is 1-based.
struct KeywordsProblem {
  size_t line = 0;
  std::string reason;
};

// Index i <-> letter 'a' + i <-> keyword. Keywords are matched without
// regard to ASCII case, as Dovecot does (its keyword tables hash with
// strcasecmp): "$junk" finds the letter of "$Junk", and the spelling in the
// file is the one reported. A value type; not synchronized.
class KeywordTable {
 public:
  KeywordTable() = default;

  // Parses a dovecot-keywords file. The INBOX of the Dovecot fixture:
  //
  //   0 $Forwarded
  //   1 $label1
  //   2 $Junk
  //
  // Lines are "<index> <keyword>" with LF or CRLF ends, in any order, with
  // gaps. A line that is not that, has an index above 25, or a keyword that
  // fails IsValidKeyword is reported in problems() and skipped (Dovecot
  // skips the first two silently and would take any name). As in Dovecot, a
  // keyword seen on an earlier line (in any case) is skipped, and an index
  // seen before is taken by the later line. The last line is skipped if it
  // has no line end, which Dovecot does not read either. Never fails today:
  // an empty or garbage file is an empty table with problems.
  static Result<KeywordTable> Parse(std::string_view bytes);

  // The file as Dovecot writes it: "<index> <keyword>\n" for each used
  // index, in index order. Parsing a file Dovecot wrote and serializing it
  // gives back its bytes.
  std::string Serialize() const;

  // The letter of `keyword`, or nullopt if the file has none for it.
  std::optional<char> LetterFor(std::string_view keyword) const;
  // The keyword of `letter` ('a'..'z'), or nullopt: a letter without a line
  // is ignored (Dovecot does the same), as is any other character.
  std::optional<std::string_view> KeywordFor(char letter) const;

  // The letter of `keyword`, giving it the lowest free index if it has none
  // yet, as Dovecot does when a keyword is first set in a mailbox (letters
  // therefore differ between mailboxes). The caller must then write the
  // file. kInvalidArgument if IsValidKeyword fails; kNoSpace (ENOSPC, what
  // setxattr answers when no more attributes fit) when all 26 letters are
  // taken: such keywords would live only in Dovecot's index, which mailfs
  // does not write.
  Result<char> Assign(std::string_view keyword);

  // Number of keywords with a letter.
  size_t size() const;
  bool empty() const { return size() == 0; }

  // What Parse skipped (at most kMaxKeywordsProblems + 1); empty for a
  // table built by Assign.
  const std::vector<KeywordsProblem>& problems() const { return problems_; }

  friend bool operator==(const KeywordTable& a, const KeywordTable& b) {
    return a.names_ == b.names_;
  }

 private:
  std::optional<size_t> IndexOf(std::string_view keyword) const;

  std::array<std::string, kMaxMaildirKeywords> names_;  // "" = free
  std::vector<KeywordsProblem> problems_;
};

}  // namespace mailfs::maildir
