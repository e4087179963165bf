# frozen_string_literal: true

module Rbscope
  VERSION = "0.1.0"
end
